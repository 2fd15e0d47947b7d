"""``clearnet weights list | download | verify | path``: the registry from a terminal, in this
process and in a fresh one (where huggingface_hub reads the HF_* variables at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _hub import FakeHub

from napari_clearnet import cli, weights


def test_cli_list_json_and_errors(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    default = weights.get_entry(weights.DEFAULT_MODEL)
    row = next(r for r in rows if r["name"] == default.name)
    assert row == {**{k: getattr(default, k) for k in
                      ("name", "repo_id", "revision", "filename", "sha256", "size", "bundled", "license",
                       "description")}, "cached": True}
    assert cli.main(["weights", "list"]) == 0
    assert default.name in capsys.readouterr().out
    assert cli.main(["weights", "verify", "nope"]) == 1
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert cli.main(["weights", "path", weights.DEFAULT_MODEL]) == 0
    assert Path(capsys.readouterr().out.strip()) == default.bundled_path


def test_cli_in_process(hub: FakeHub, tiny: bytes, capsys) -> None:
    assert cli.main(["weights", "path", "tiny"]) == 1
    assert "clearnet weights download tiny" in capsys.readouterr().err
    assert cli.main(["weights", "verify", "tiny"]) == 1  # named but not downloaded
    capsys.readouterr()
    assert cli.main(["weights", "download", "tiny"]) == 0
    path = Path(capsys.readouterr().out.strip().split(": ", 1)[1])
    assert cli.main(["weights", "path", "tiny"]) == 0
    assert Path(capsys.readouterr().out.strip()) == path
    assert cli.main(["weights", "verify"]) == 0
    assert "tiny: ok" in capsys.readouterr().out
    path.resolve().write_bytes(tiny[:-4] + b"oops")  # damage the cached blob
    assert cli.main(["weights", "verify", "tiny"]) == 1
    out = capsys.readouterr().out
    assert "checksum mismatch for tiny" in out and "removed from the cache" in out
    assert not path.exists()


def test_cli_subprocess_reads_env_at_import(hub: FakeHub, tmp_path: Path) -> None:
    """A fresh process (huggingface_hub reads HF_* at import): download, then list --json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "napari_clearnet.cli", "weights"]
    dl = subprocess.run([*run, "download", "tiny"], env=env, capture_output=True, text=True, timeout=60)
    assert dl.returncode == 0, dl.stderr
    ls = subprocess.run([*run, "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    rows = json.loads(ls.stdout)
    (row,) = rows
    assert {"name", "repo_id", "revision", "filename", "sha256", "size", "bundled", "cached"} <= set(row)
    assert row["name"] == "tiny" and row["cached"] is True and row["bundled"] is False
    assert row["sha256"] == weights.get_entry("tiny").sha256
    assert hub.count("GET") == 1, hub.requests
