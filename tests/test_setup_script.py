"""scripts/setup_env.sh picks the PyTorch build for the machine and says what it does.

The script runs on a copy with a fake ``.venv`` whose ``python`` records what it is asked to do,
so nothing is installed and no network is used.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
ROOT = Path(__file__).resolve().parents[1]
CPU = "https://download.pytorch.org/whl/cpu"

FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "--version") echo "Python 3.11.0" ;;
  *"import torch"*) exit "${FAKE_TORCH:-1}" ;;
  *urlopen*) [ "${FAKE_INDEX_UP:-0}" = 1 ] ;;
  "-m pip install -q"*) ;;
  "-m pip install"*)
    echo "Collecting torch"
    echo "  Downloading torch-2.13.0-cp311-none.whl (200.0 MB)"
    echo "Successfully installed torch-2.13.0" ;;
esac
"""


def _exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _run(tmp_path: Path, gpu: bool, index_up: bool, extras: str = "") -> tuple[list[str], str, str]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup_env.sh", root / "scripts")
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    _exe(venv / "python", FAKE_PYTHON)
    (venv / "activate").write_text(f'export PATH="{venv}:$PATH"\n')
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    _exe(stubs / "nvidia-smi", f"#!/usr/bin/env bash\nexit {0 if gpu else 9}\n")  # 9: no driver
    _exe(stubs / "Xvfb", "#!/usr/bin/env bash\n")  # never the apt-get branch
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log),
           "FAKE_INDEX_UP": "1" if index_up else "0"}
    for k in ("TORCH_BUILD", "TORCH_VERSION", "TORCH_CPU_INDEX"):
        env.pop(k, None)
    res = subprocess.run(["bash", str(root / "scripts" / "setup_env.sh"), extras], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    return [c for c in calls if c.startswith("-m pip install") and "torch==" in c], res.stdout, res.stderr


def test_no_gpu_installs_the_cpu_build_from_pytorchs_cpu_index(tmp_path):
    torch, out, err = _run(tmp_path, gpu=False, index_up=True)
    assert torch == [f"-m pip install --progress-bar off torch==2.13.0 --index-url {CPU}"]
    assert "CPU build" in err and "no NVIDIA GPU" in err
    # progress in a log: one line per download and the summary, not pip's every line
    assert "  Downloading torch" in out and "Collecting" not in out
    assert "installing napari-clearnet (editable), the core only" in err


def test_no_gpu_and_no_cpu_index_falls_back_to_the_configured_index(tmp_path):
    torch, _, err = _run(tmp_path, gpu=False, index_up=False)
    assert torch == ["-m pip install --progress-bar off torch==2.13.0"]
    assert "cannot be reached" in err


def test_an_nvidia_gpu_gets_the_default_cuda_build(tmp_path):
    torch, _, err = _run(tmp_path, gpu=True, index_up=True, extras="napari")
    assert torch == ["-m pip install --progress-bar off torch==2.13.0"]
    assert "CUDA" in err and "with [napari]" in err
