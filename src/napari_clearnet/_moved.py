"""Old import paths keep working for one release, with a :class:`DeprecationWarning`.

Until 0.1 the package was 40 flat modules (``napari_clearnet.engine``, ``napari_clearnet.physics``,
``napari_clearnet._layers`` …). They now live in subpackages (see ``docs/architecture.md``). An old
path such as ``from napari_clearnet.engine import load_model`` still imports: a finder at the end of
``sys.meta_path`` answers for the old module names only (nothing of ours is left at those paths),
and each name taken from such a module warns once per place with the new path to use.

The old names of the packages that kept their name (``io``, ``video``, ``batch``, ``cli``,
``bench``) are forwarded by those packages' own ``__getattr__`` through :func:`forward`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

PACKAGE = __name__.rpartition(".")[0]

#: old flat module → the modules (relative to the package) that hold its names now, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "arrays": ("core.arrays",),
    "physics": ("core.physics",),
    "dcp": ("core.dcp",),
    "model": ("core.model",),
    "estimators": ("core.estimators",),
    "devices": ("core.devices",),
    "engine": ("core.engine", "api", "core.run"),
    "run": ("core.run",),
    "recovery": ("core.recovery",),
    "buffers": ("core.buffers",),
    "threads": ("core.threads",),
    "limits": ("core.limits",),
    "checks": ("core.checks",),
    "files": ("_util.files", "batch.inputs"),
    "_validate": ("_util.validate",),
    "_tiff": ("io.tiff",),
    "video_probe": ("video.probe",),
    "video_repair": ("video.repair",),
    "video_out": ("video.writer",),
    "batch_inputs": ("batch.inputs",),
    "batch_plan": ("batch.plan", "errors"),
    "batch_options": ("batch.options",),
    "cluster": ("batch.cluster",),
    "cluster_connect": ("batch.cluster_connect",),
    "cluster_workers": ("batch.cluster_workers",),
    "depth": ("analysis.depth", "analysis.fit"),
    "metrics": ("analysis.metrics",),
    "_depth_cli": ("cli.depth",),
    "_weights_cli": ("cli.weights",),
    "bench_report": ("bench.report",),
    "bench_video": ("bench.video",),
    "bench_load": ("bench.load",),
    "_layers": ("_plugin.layers",),
    "_widgets": ("_plugin.widgets.dehaze", "_plugin.widgets.transmission", "_plugin.widgets.airlight",
                 "_plugin.widgets.panel", "_plugin.widgets.runner", "_plugin.widgets.picker"),
    "_compare": ("_plugin.widgets.compare",),
    "_depth_widget": ("_plugin.widgets.depth",),
    "_preview": ("_plugin.preview",),
    "_activity": ("_plugin.activity",),
    "_reader": ("_plugin.reader",),
    "_sample_data": ("_plugin.sample_data",),
}


def _find(homes: tuple[str, ...], name: str) -> tuple[str, Any]:
    for home in homes:
        try:
            module = importlib.import_module(f"{PACKAGE}.{home}")
        except ModuleNotFoundError:  # a home this release does not have
            continue
        if hasattr(module, name):
            value = getattr(module, name)
            defined = getattr(value, "__module__", None)  # the home it was defined in, if it was ours
            where = defined if isinstance(defined, str) and defined.startswith(f"{PACKAGE}.") else None
            return where or f"{PACKAGE}.{home}", value
    raise AttributeError(name)


def forward(old: str, name: str, homes: tuple[str, ...]) -> Any:
    """``old.name`` for a name that moved to one of ``homes``, with a DeprecationWarning."""
    if name.startswith("__"):
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    try:
        where, value = _find(homes, name)
    except AttributeError:
        raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
    warnings.warn(f"{old}.{name} is deprecated and will be removed in the next release; import it from "
                  f"{where}", DeprecationWarning, stacklevel=3)
    return value


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import napari_clearnet.<old flat module>`` with a module that forwards its names."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, old = fullname.rpartition(".")
        if package == PACKAGE and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        homes = MOVED[spec.name.rpartition(".")[2]]
        return types.ModuleType(spec.name, f"Deprecated: moved to {', '.join(homes)}")

    def exec_module(self, module: types.ModuleType) -> None:
        homes = MOVED[module.__name__.rpartition(".")[2]]
        module.__dict__["__getattr__"] = lambda name: forward(module.__name__, name, homes)
        module.__dict__["__dir__"] = lambda: sorted(
            {n for h in homes for n in dir(importlib.import_module(f"{PACKAGE}.{h}")) if n[:2] != "__"})


def install() -> None:
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
