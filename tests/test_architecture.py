"""The package's layout keeps its shape: one-way layers (import-linter), no import cycles, small
modules, a cheap ``import napari_clearnet``, one root for the exceptions, and old import paths
that still work for one release (see docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import napari_clearnet
from napari_clearnet.errors import ClearNetError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(napari_clearnet.__file__).resolve().parent


def _lint_imports(src: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with this repository's contract (pyproject.toml) on the package under ``src``."""
    config = tmp_path / "importlinter.toml"
    config.write_text(_contract_toml())
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)


def _contract_toml() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    nxt = text.find("\n[tool.", start + 1)
    while nxt != -1 and text.startswith("\n[tool.importlinter", nxt):
        nxt = text.find("\n[tool.", nxt + 1)
    return text[start:] if nxt == -1 else text[start:nxt]


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "napari_clearnet", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "_bundled", "napari.yaml"))
    return src


def test_the_layers_contract_holds(tmp_path):
    proc = _lint_imports(_copy_package(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_the_layers_contract_fails_on_a_planted_upward_import(tmp_path):
    src = _copy_package(tmp_path)
    physics = src / "napari_clearnet" / "core" / "physics.py"
    physics.write_text(physics.read_text() + "\n\ndef _planted():\n    from ..cli import main  # upward\n\n"
                       "    return main\n")
    proc = _lint_imports(src, tmp_path)
    assert proc.returncode != 0
    assert "napari_clearnet.core is not allowed to import napari_clearnet.cli" in proc.stdout, proc.stdout


def _import_graph() -> dict[str, set[str]]:
    """Every import of a package module by another, module-level or inside functions (not those
    under ``if TYPE_CHECKING:``, which never run)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("napari_clearnet", exclude_type_checking_imports=True, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_import_cycle_between_modules_even_through_imports_inside_functions():
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_at_most_twelve_modules_at_the_top_and_none_over_450_lines():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if "__pycache__" not in p.parts and (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


@pytest.mark.parametrize("code", [
    "import napari_clearnet",
    "import napari_clearnet; napari_clearnet.__version__; napari_clearnet.ClearNetError",
    "from napari_clearnet.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass",
    "from napari_clearnet.cli import main\ntry: main(['--version'])\nexcept SystemExit: pass",
    "from napari_clearnet.cli import main\ntry: main(['dehaze', '--help'])\nexcept SystemExit: pass",
])
def test_importing_the_package_and_asking_the_cli_for_help_load_no_torch(code):
    probe = code + "\nimport sys\nprint('TORCH', 'torch' in sys.modules, 'napari' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False False" in proc.stdout


def test_public_names_load_on_first_use():
    for name in napari_clearnet.__all__:
        assert getattr(napari_clearnet, name) is not None
    assert napari_clearnet.dehaze.__module__ == "napari_clearnet.api"
    assert inspect.signature(napari_clearnet.dehaze).return_annotation in ("DehazeResult", "'DehazeResult'")


def _all_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(napari_clearnet.__path__, "napari_clearnet.")
            if m.name.split(".")[-1] != "__main__"]


def test_every_exception_of_the_package_derives_from_clearneterror():
    pytest.importorskip("napari")
    orphans = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning)
                    and obj.__module__ == name and not issubclass(obj, ClearNetError)
                    and not issubclass(obj, KeyboardInterrupt)):  # cli's Terminated is a Ctrl-C
                orphans.append(f"{name}.{obj.__name__}")
    assert orphans == []


def test_errors_keep_the_builtin_classes_callers_catch():
    from napari_clearnet import errors

    assert issubclass(errors.WeightsError, ValueError)
    assert issubclass(errors.BatchError, ValueError)
    assert issubclass(errors.ImageTooLarge, ValueError)
    assert issubclass(errors.OutputFolderError, OSError)
    assert issubclass(errors.HubStalled, TimeoutError)
    from napari_clearnet.weights import WeightsError

    assert WeightsError is errors.WeightsError


@pytest.mark.parametrize(("old", "name", "new"), [
    ("napari_clearnet.engine", "load_model", "napari_clearnet.api"),
    ("napari_clearnet.engine", "Dehazer", "napari_clearnet.core.engine"),
    ("napari_clearnet.engine", "cached_model", "napari_clearnet.api"),
    ("napari_clearnet.model", "ClearNet", "napari_clearnet.core.model"),
    ("napari_clearnet.physics", "dark_channel", "napari_clearnet.core.physics"),
    ("napari_clearnet.dcp", "DCPParams", "napari_clearnet.core.dcp"),
    ("napari_clearnet._layers", "dehaze_layer", "napari_clearnet._plugin.layers"),
    ("napari_clearnet.files", "read_tag", "napari_clearnet.batch.inputs"),
    ("napari_clearnet.video_out", "dehaze_video", "napari_clearnet.video.writer"),
    ("napari_clearnet.batch_plan", "BatchError", "napari_clearnet.errors"),
    ("napari_clearnet._widgets", "DehazeWidget", "napari_clearnet._plugin.widgets.dehaze"),
    ("napari_clearnet._widgets", "AirlightWidget", "napari_clearnet._plugin.widgets.airlight"),
    ("napari_clearnet._widgets", "TransmissionWidget", "napari_clearnet._plugin.widgets.transmission"),
])
def test_old_import_paths_still_work_with_a_deprecation_warning(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_old_names_of_the_packages_that_kept_their_name_still_work():
    from napari_clearnet import io

    assert io.read_image is importlib.import_module("napari_clearnet.io.load").read_image  # no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from napari_clearnet.io import read_image  # noqa: F401  the public path: no warning
    with pytest.warns(DeprecationWarning):
        assert io.png_header is importlib.import_module("napari_clearnet.io.images").png_header


def test_from_the_package_import_an_old_module_name_still_works():
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        from napari_clearnet import engine
        try:
            engine.load_model
        except DeprecationWarning as w:
            print("WARNED", w)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert "WARNED napari_clearnet.engine.load_model is deprecated" in proc.stdout, proc.stderr


def test_the_docs_import_only_public_names():
    private = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in doc.read_text().split("```")[1::2]:
            if not block.startswith(("python", "py\n")):
                continue
            code = block.split("\n", 1)[1]
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_clearnet"):
                    parts = node.module.split(".") + [a.name for a in node.names]
                    if any(p.startswith("_") for p in parts):
                        private.append(f"{doc.name}: from {node.module} import ...")
    assert private == []


PUBLIC_ENTRY_POINTS = ["dehaze", "load_model", "haze_depth", "visibility", "read_video", "dehaze_video",
                       "DehazeOptions"]


def test_the_public_entry_points_have_numpydoc_sections():
    from napari_clearnet import api, weights
    from napari_clearnet.batch import dehaze_files

    objs = [getattr(napari_clearnet, n) for n in PUBLIC_ENTRY_POINTS]
    objs += [api.cached_model, weights.load, dehaze_files]
    missing = [o.__qualname__ for o in objs
               if not ("Parameters\n    ----------" in (o.__doc__ or "")
                       and ("Returns\n    -------" in o.__doc__ or inspect.isclass(o)))]
    assert missing == []


def test_the_docstring_examples_run():
    import doctest

    from napari_clearnet import api
    from napari_clearnet.core import options

    for module in (api, options):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_the_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("pdoc")
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    api_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api_docs)
    assert api_docs.build(tmp_path) == []
    page = (tmp_path / "napari_clearnet" / "api.html").read_text()
    assert 'id="parameters"' in page and 'id="raises"' in page  # numpydoc sections rendered
