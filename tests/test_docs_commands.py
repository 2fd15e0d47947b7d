"""Every command of the README's and docs/*.md's ```bash blocks runs as written.

Each logical command (a line, with its ``\\`` continuations) runs in a fresh copy of the repository
that also holds the files the docs name (``photo.jpg``, ``clip.mp4``, ``photos/``, ...), so the
commands are independent, as a reader would try them. A block preceded by
``<!-- skip-test: why -->`` is not run (it needs the network, a display, a GPU, training data or
minutes); every other block must run with exit status 0. ``clearnet`` commands run in this process
(``napari_clearnet.cli.main``: the same code, without paying for torch's import each time), the
others through bash with this Python first on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "demo", "__pycache__", "*.pyc", ".tox",
                                     "*.egg-info", ".pytest_cache", ".ruff_cache")


def bash_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, text, skip reason or None) of every ```bash block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                body.append(lines[j])
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            m = SKIP.search(lines[k]) if k >= 0 else None
            blocks.append((start, "\n".join(body), m.group(1) if m else None))
            i = j
        i += 1
    return blocks


def commands(block: str) -> list[str]:
    """Logical commands of a block: continuation lines joined, blank and comment lines dropped."""
    out, cur = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.lstrip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


ALL = [(p, n, text, why) for p in DOCS for n, text, why in bash_blocks(p)]
RUN = [pytest.param(p, n, text, id=f"{p.relative_to(ROOT)}:{n}") for p, n, text, why in ALL if why is None]


def test_blocks_are_found_and_skips_give_a_reason():
    assert len(ALL) >= 15
    readme = [b for b in ALL if b[0].name == "README.md"]
    assert any(why is None for *_, why in readme), "the README's commands are tested"
    for p, n, _, why in ALL:
        assert why is None or len(why) > 5, f"{p.name}:{n}: say why the block is skipped"


def _inputs(where: Path) -> None:
    """The files the docs' commands name, small enough for seconds-long runs."""
    from _common import write_clip
    from PIL import Image

    from napari_clearnet._plugin.sample_data import hazy_motorcycle

    _, (hazy, _, _) = hazy_motorcycle(1.8)  # 741×500: every --point of the docs is inside
    hazy = np.asarray(hazy, dtype=np.uint8)
    small = hazy[::4, ::4]
    Image.fromarray(hazy).save(where / "photo.jpg", quality=90)
    Image.fromarray(small).save(where / "foggy.jpg", quality=90)
    Image.fromarray(small).save(where / "photo.tif")
    for sub in ("photos", "clips", "cctv", "hazy"):
        (where / sub).mkdir()
    for i in range(2):
        Image.fromarray(np.roll(small, 9 * i, axis=1)).save(where / "photos" / f"p{i}.jpg")
        Image.fromarray(np.roll(small, 5 * i, axis=0)).save(where / "clips" / f"f{i}.png")
        Image.fromarray(np.roll(small, 7 * i, axis=0)).save(where / "hazy" / f"h{i}.png")
    import tifffile

    scan = (small.mean(axis=2) / 255 * 4095).astype(np.uint16)
    tifffile.imwrite(where / "scan.tif", scan)
    frames = [Image.fromarray(np.roll(small, 3 * i, axis=1)) for i in range(3)]
    frames[0].save(where / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    tifffile.imwrite(where / "clip.tif", np.stack([np.roll(hazy, i, axis=1) for i in range(13)]),
                     photometric="rgb")
    write_clip(where / "clip.mp4", n=8, size=(48, 64), audio=True)
    write_clip(where / "cctv" / "cam1.mp4", n=6, size=(48, 64))
    shutil.copy(where / "foggy.jpg", where / "cctv" / "still.jpg")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("docs") / "repo"
    shutil.copytree(ROOT, repo, ignore=COPY_IGNORE, symlinks=True)
    _inputs(repo)
    return repo


def _run_clearnet(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from napari_clearnet.cli import main

    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return code, out + err


def _run_bash(command: str, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(cwd / "src"), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout + res.stderr


@pytest.mark.parametrize(("doc", "line", "block"), RUN)
def test_documented_commands_run(doc, line, block, template, tmp_path, capsys):
    for k, command in enumerate(commands(block)):
        work = tmp_path / f"c{k}"
        shutil.copytree(template, work, symlinks=True)
        argv = shlex.split(command, comments=True)
        if argv[0] == "clearnet" and not re.search(r"[|;&<>$`]", command):
            code, output = _run_clearnet(argv[1:], work, capsys)
        else:
            code, output = _run_bash(command, work)
        assert code == 0, f"{doc.name}:{line}: `{command}` exited {code}:\n{output[-3000:]}"
        assert "Traceback" not in output, f"{doc.name}:{line}: `{command}`:\n{output[-3000:]}"


def test_nothing_users_read_or_run_points_at_the_projects_private_data():
    """The development data and reviews beside the repository are not the user's."""
    for folder, pattern in (("docs", "*.md"), ("scripts", "*"), ("examples", "*"), ("training", "*.py")):
        for p in [ROOT / "README.md", *sorted((ROOT / folder).rglob(pattern))]:
            if p.is_file():
                assert "../shared" not in p.read_text(encoding="utf-8", errors="replace"), p
