"""Model weights: which models exist, where their files are, and how a file becomes a network.

One job per module:

* :mod:`.registry`: the known models (name, Hub repository, file, revision, size, sha256,
  licence, description) and the check of a file against its entry;
* :mod:`.fileformat`: the safetensors file with its config (save, read, verify, build); pickles
  are never loaded;
* :mod:`.hub`: a thin layer over ``huggingface_hub.hf_hub_download`` and the HF cache;
* :mod:`.sources`: which file a model string means (registry name, ``hf://`` address or path),
  and :func:`load`: a model string as a built network in one call.

Writing Hub folders and model cards is a training job: ``training/export.py``.
"""

from .fileformat import (
    CONFIG_KEY,
    WeightsError,
    build_model,
    check_finite,
    read_weights,
    save_weights,
    sha256_file,
)
from .hub import TIMEOUT_ENV, VerifyReport, cached_path, download, parse_hf_address, verify
from .registry import (
    DEFAULT_MODEL,
    REGISTRY_ENV,
    ModelEntry,
    bundled_dir,
    get_entry,
    list_models,
    registry_file,
    verify_file,
)
from .sources import LoadedWeights, load, parse_source, resolve

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_MODEL",
    "REGISTRY_ENV",
    "TIMEOUT_ENV",
    "LoadedWeights",
    "ModelEntry",
    "VerifyReport",
    "WeightsError",
    "build_model",
    "bundled_dir",
    "cached_path",
    "check_finite",
    "download",
    "get_entry",
    "list_models",
    "load",
    "parse_hf_address",
    "parse_source",
    "read_weights",
    "registry_file",
    "resolve",
    "save_weights",
    "sha256_file",
    "verify",
    "verify_file",
]
