"""Batches on a Dask cluster (issue 14): a LocalCluster of two worker processes gives the same
outputs as one process, names a failed file while the rest go on, and resumes with skip_existing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from _common import photo, write_clip

pytest.importorskip("distributed")

from napari_clearnet import io
from napari_clearnet.batch import dehaze_files
from napari_clearnet.batch.cluster import connect
from napari_clearnet.batch.inputs import read_tag
from napari_clearnet.cli import main
from napari_clearnet.video import VideoReader


def _inputs(root: Path) -> Path:
    src = root / "in"
    for i in range(3):
        photo(src / f"p{i}.png", i)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    write_clip(src / "clip.mp4", n=8, audio=True)
    return src


def _same(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".mp4"):
            fa, fb = VideoReader(a / name), VideoReader(b / name)
            assert len(fa) == len(fb)
            for x, y in zip(fa, fb, strict=True):
                np.testing.assert_array_equal(x, y)
        elif name.endswith(".png"):
            np.testing.assert_array_equal(io.read_image(a / name), io.read_image(b / name))
        assert read_tag(a / name) == read_tag(b / name)


def test_local_cluster_matches_one_process_names_failures_and_resumes(tmp_path: Path, capsys) -> None:
    src = _inputs(tmp_path)
    args = ["dehaze", str(src), "--save-transmission", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "one")]) == 1
    environ = dict(os.environ)
    assert main([*args, "-o", str(tmp_path / "two"), "--workers", "2"]) == 1
    assert dict(os.environ) == environ  # Dask's worker settings (OMP_NUM_THREADS=1, ...) stay theirs
    err = capsys.readouterr().err
    assert err.count(f"error: {src / 'broken.png'}:") == 2  # named, and the rest went on
    assert "8 files written to" in err.splitlines()[-1]
    _same(tmp_path / "one", tmp_path / "two")

    # resume through the API: only what is missing is made again, by the cluster's workers
    (tmp_path / "two" / "p1_dehazed.png").unlink()
    (tmp_path / "two" / "clip_dehazed.mp4").unlink()
    with connect(workers=2) as client:
        loaded = client.run(lambda: len(__import__("napari_clearnet.api").api._CACHE))
        assert list(loaded.values()) == [0, 0]  # nothing loaded before the batch
        report = dehaze_files([src], tmp_path / "two", client=client, skip_existing=True,
                              save_transmission=True, progress=False)
        loaded = client.run(lambda: len(__import__("napari_clearnet.api").api._CACHE))
    assert list(loaded.values()) == [1, 1]  # each worker loaded the model once
    assert sorted(p.name for p in report.written) == ["clip_dehazed.mp4", "p1_dehazed.png"]
    assert len(report.skipped) == 2 and [f for f, _ in report.failed] == [str(src / "broken.png")]
    _same(tmp_path / "one", tmp_path / "two")


# ------------------------------------------------------------------ failures: one line, fast (G2, G12)
@pytest.fixture
def quick_probe(monkeypatch):
    from napari_clearnet.batch import cluster_connect

    monkeypatch.setattr(cluster_connect, "PROBE_S", 1.0)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("clearnet dehaze: error: "), err
    return lines[0]


def test_cluster_addresses_that_are_no_scheduler_fail_in_seconds_in_one_line(tmp_path, capsys,
                                                                              quick_probe) -> None:
    # G2: an HTTP server's port (the dashboard's) made --cluster wait for ever, a refused port took 30 s;
    # G12: tls:// without certificates gave a traceback, inproc:// "not enough values to unpack"
    import http.server
    import socket
    import threading

    img = photo(tmp_path / "photo.png")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the server's log is not the CLI's output
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    cases = {
        f"tcp://127.0.0.1:{httpd.server_address[1]}": "is not a Dask scheduler",
        f"tcp://127.0.0.1:{silent.getsockname()[1]}": "dashboard",
        f"tcp://127.0.0.1:{free}": "nothing listens",
        "tcp://127.0.0.1:99999": "port from 1 to 65535",
        "tls://127.0.0.1:8786": "needs TLS certificates",
        "inproc://nothing": "another process cannot reach",
        "http://127.0.0.1:8786": "scheme must be one of",
    }
    try:
        for address, said in cases.items():
            start = time.monotonic()
            assert main(["dehaze", str(img), "-o", str(tmp_path / "out"), "--cluster", address,
                         "--method", "dcp", "--no-progress"]) == 2
            assert said in _one_line_error(capsys), address
            assert time.monotonic() - start < 4, address
    finally:
        httpd.shutdown()
        silent.close()


def test_a_missing_model_is_said_before_any_cluster_starts(tmp_path, capsys, monkeypatch) -> None:
    # G12: --workers 2 --model ./missing.safetensors started a cluster and printed a traceback per worker
    import napari_clearnet.batch.cluster as cluster

    monkeypatch.setattr(cluster, "connect", lambda *a: pytest.fail("a cluster was started"))
    img = photo(tmp_path / "photo.png")
    assert main(["dehaze", str(img), "-o", str(tmp_path / "out"), "--workers", "2", "--model",
                 str(tmp_path / "missing.safetensors"), "--no-progress"]) == 2
    assert "cannot load the model: " in _one_line_error(capsys)


@pytest.fixture
def scheduler():
    """A scheduler on 127.0.0.1 with no worker (as a cluster whose batch jobs are still queued)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


def test_a_scheduler_without_workers_is_waited_for_a_stated_time(tmp_path, capsys, scheduler) -> None:
    # G2: a scheduler whose workers had not started made the run wait silently for ever
    img = photo(tmp_path / "photo.png")
    start = time.monotonic()
    assert main(["dehaze", str(img), "-o", str(tmp_path / "out"), "--cluster", scheduler.scheduler_address,
                 "--worker-wait", "1", "--method", "dcp", "--no-progress"]) == 2
    err = capsys.readouterr().err
    address = scheduler.scheduler_address
    assert f"waiting up to 1 s for a Dask worker to join the scheduler at {address}" in err
    assert "error: no Dask worker joined the scheduler" in err and "--worker-wait" in err
    assert "Traceback" not in err and time.monotonic() - start < 15
    # variant: every worker leaves mid-run: the wait for one is bounded as well
    from napari_clearnet.batch.cluster import _still_workers

    class Empty:
        def nthreads(self):
            return {}

    since = _still_workers(Empty(), None, 0.01, 3)
    time.sleep(0.05)
    with pytest.raises(ValueError, match=r"no Dask worker has been left .* 3 input"):
        _still_workers(Empty(), since, 0.01, 3)


def test_relative_paths_reach_a_worker_started_in_another_folder(tmp_path, capsys, monkeypatch,
                                                                  scheduler) -> None:
    # G3: relative inputs and -o were resolved in each worker's own folder: outputs lost, exit 0
    import subprocess
    import sys

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                               scheduler.scheduler_address, "--nthreads", "1", "--no-nanny"],
                              cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        photo(tmp_path / "photo.png")
        monkeypatch.chdir(tmp_path)
        assert main(["dehaze", "photo.png", "-o", "out", "--cluster", scheduler.scheduler_address,
                     "--method", "dcp", "--no-progress"]) == 0
        assert "1 file written to out" in capsys.readouterr().err
        assert (tmp_path / "out" / "photo_dehazed.png").is_file() and not (elsewhere / "out").exists()
        # variant: a worker that sees another folder at the output path is refused before any work
        from distributed import Client

        from napari_clearnet.batch import dehaze_files
        from napari_clearnet.batch.cluster_workers import check_worker

        with Client(scheduler.scheduler_address) as client:
            said = client.submit(check_worker, str(tmp_path / "out"), ".no-such-marker", "x",
                                 str(tmp_path / "photo.png"), pure=False).result(timeout=60)
            assert "sees another folder at" in said and "file system every worker shares" in said
            with pytest.raises(ValueError, match="would replace the input"):  # and G4's class holds there
                dehaze_files(["photo.png"], ".", client=client, method="dcp", suffix="", overwrite=True,
                             progress=False)
            # G12: a model that loads here but not on a worker: one line naming the worker, no traceback
            import napari_clearnet.batch.cluster as cluster

            monkeypatch.setattr(cluster, "check_model", lambda opts: None)
            with pytest.raises(ValueError, match=r"cannot load the model on the Dask worker tcp://\S+: "
                                                 r"WeightsError: .*missing\.safetensors"):
                dehaze_files(["photo.png"], "out2", client=client,
                             model=str(tmp_path / "missing.safetensors"), progress=False)
            assert "Traceback" not in capsys.readouterr().err
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_worker_that_dies_is_one_line_for_its_input() -> None:
    # G12's class: a worker killed on every try (KilledWorker) is said in one line, not Dask's repr
    from napari_clearnet.batch.cluster import _failure

    killed = type("KilledWorker", (Exception,), {})("Attempted to run task 'clearnet-...' on 4 workers\n...")
    assert _failure(killed).startswith("the worker processing it died (killed, out of memory")
    assert "\n" not in _failure(RuntimeError("a\nb"))


def test_stopping_a_workers_run_leaves_no_partial_clip(tmp_path: Path) -> None:
    # G21: SIGTERM during a --workers run left the clip being written as a .part file
    import signal
    import subprocess

    from _common import CLEARNET

    write_clip(tmp_path / "big.mp4", n=400, size=(120, 160))
    out = tmp_path / "ocl"
    for group in (False, True):  # the CLI alone (kill), or with its workers (timeout -s TERM)
        proc = subprocess.Popen([*CLEARNET, "dehaze", "big.mp4", "-o", "ocl", "--workers", "1", "--method",
                                 "dcp", "--no-progress"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (
                out.is_dir() and any(".part" in p.name for p in out.iterdir())):
            time.sleep(0.05)
        (os.killpg if group else os.kill)(proc.pid, signal.SIGTERM)
        err = proc.communicate(timeout=90)[1]
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert err.count("terminated by SIGTERM") == 1 and "Traceback" not in err, err
        assert not [p.name for p in out.iterdir() if ".part" in p.name], err
        assert not (out / "big_dehazed.mp4").exists()  # stopped between frames, not finished
