"""threads and buffers: the engine's CPU threads follow the cores other programs leave free, the
user's own thread setting wins, and neither the thread count, the reused buffers nor the C
allocator's settings change a single output bit."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from _common import METHODS, REPO, dehazer, hazy_rgb

from napari_clearnet.bench.load import busy_cores
from napari_clearnet.core import threads

TWO_CORES = pytest.mark.skipif(
    threads._cores() < 2 or threads._DEFAULT < 2 or not os.path.exists("/proc/stat"),
    reason="needs two cores, torch's default of two threads or more, and /proc",
)


@pytest.fixture
def torch_threads():
    """Put torch's thread count back after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _digest(method: str) -> str:
    res = dehazer(method).dehaze(hazy_rgb(150, 200))
    data = res.image.tobytes() + res.transmission.tobytes() + res.airlight.tobytes()
    return hashlib.sha256(data).hexdigest()


@TWO_CORES
@pytest.mark.parametrize("method", METHODS)
def test_the_thread_count_does_not_change_a_bit(method: str, torch_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "enabled", lambda: False)  # hold the count we set
    torch.set_num_threads(1)
    one = _digest(method)
    torch.set_num_threads(threads._DEFAULT)
    assert _digest(method) == one


def _threads_seen(method: str) -> list[int]:
    """torch's thread count at each estimate of a run."""
    d = dehazer(method)
    seen: list[int] = []
    inner = d.estimator.estimate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inner(*args, **kwargs)

    d.estimator.estimate = spy  # type: ignore[method-assign]
    try:
        d.dehaze(hazy_rgb(60, 80))
    finally:
        del d.estimator.estimate
    return seen


@TWO_CORES
def test_a_busy_core_lowers_the_thread_count_for_the_run_only(torch_threads) -> None:
    torch.set_num_threads(threads._DEFAULT)
    with busy_cores(1):
        deadline = time.monotonic() + 5
        while (threads.busy_cores() or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (threads.busy_cores() or 0) >= 1, "the busy process should show in the run queue"
        assert threads.free_cores() <= threads._cores() - 1
        seen = _threads_seen("clearnet")
    assert seen and max(seen) < threads._DEFAULT
    assert torch.get_num_threads() == threads._DEFAULT  # put back after the run


@TWO_CORES
def test_the_users_thread_setting_wins(torch_threads, monkeypatch) -> None:
    torch.set_num_threads(1)  # the user's choice, not torch's default
    assert not threads.enabled()
    with busy_cores(1):
        assert set(_threads_seen("dcp")) == {1}
    assert torch.get_num_threads() == 1
    torch.set_num_threads(threads._DEFAULT)
    assert threads.enabled()
    settings = (("OMP_NUM_THREADS", "2"), ("MKL_NUM_THREADS", "1"), ("CLEARNET_ADAPTIVE_THREADS", "0"))
    for var, value in settings:
        with monkeypatch.context() as m:
            m.setenv(var, value)
            assert not threads.enabled(), var
            with threads.adapted() as n:
                assert n == torch.get_num_threads() == threads._DEFAULT


def test_free_cores_stays_between_one_and_the_default() -> None:
    n = threads.free_cores()
    assert 1 <= n <= max(1, threads._DEFAULT)
    with threads.adapted() as used:
        assert 1 <= used <= max(1, threads._DEFAULT)


@pytest.mark.parametrize("method", METHODS)
def test_full_resolution_buffers_are_reused_across_frames_and_kept_per_thread(method: str) -> None:
    d = dehazer(method)
    d.buffers.clear()
    d.dehaze(hazy_rgb(300, 420))
    store = d.buffers._local.store
    ptrs = {k: v.data_ptr() for k, v in store.items()}
    assert ptrs, "the pass takes its temporaries from the buffers"
    d.dehaze(hazy_rgb(300, 420))
    d.dehaze(hazy_rgb(200, 420))  # smaller frames fit in the same buffers
    assert {k: v.data_ptr() for k, v in d.buffers._local.store.items()} == ptrs
    other: dict = {}
    t = threading.Thread(target=lambda: (d.dehaze(hazy_rgb(60, 80)), other.update(d.buffers._local.store)))
    t.start()
    t.join()
    assert other and all(other[k].data_ptr() != ptrs[k] for k in other if k in ptrs)


_RUN = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from _common import dehazer, hazy_rgb
for m in ("clearnet", "dcp"):
    r = dehazer(m).dehaze(hazy_rgb(700, 900))
    print(m, hashlib.sha256(r.image.tobytes() + r.transmission.tobytes()).hexdigest())
"""


def test_allocator_settings_and_busy_cores_change_no_output() -> None:
    """glibc told to keep freed blocks (the settings the speed issue measured with) or not, one core
    kept busy or not (so the run takes fewer threads): the same bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = _RUN.format(tests=str(REPO / "tests"))

    def run(extra: dict[str, str]) -> str:
        p = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                           timeout=300, cwd=REPO)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stdout

    plain = run({})
    tuned = run({"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000",
                 "MALLOC_TOP_PAD_": "268435456"})
    with busy_cores(1):
        loaded = run({})
    assert plain == tuned == loaded
    assert len(plain.split()) == 4


def test_kernel_bands_cover_every_row_once_whichever_thread_takes_them() -> None:
    from napari_clearnet.core import kernels

    for height, n, rows in ((1, 2, 64), (63, 2, 64), (65, 2, 64), (3000, 2, 64), (1001, 3, 8)):
        taken: list[tuple[int, int, int]] = []

        def fn(r0: int, r1: int, taken: list = taken) -> None:
            taken.append((r0, r1, threading.get_ident()))  # list.append is atomic
            time.sleep(0.0005)

        kernels.bands(height, n, fn, rows=rows)
        spans = sorted((r0, r1) for r0, r1, _ in taken)
        assert spans[0][0] == 0 and spans[-1][1] == height
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans
        assert all(r1 - r0 >= min(rows, height) for r0, r1 in spans[:-1])
        if height >= n * rows * 2:  # more bands than threads: a slowed thread can leave its share
            assert len(spans) > n


def test_a_thread_slowed_by_another_program_takes_fewer_bands() -> None:
    """One equal band per thread made every call wait for the thread that shared a busy core."""
    from napari_clearnet.core import kernels

    me = threading.get_ident()
    per_thread: dict[int, int] = {}
    lock = threading.Lock()

    def fn(r0: int, r1: int) -> None:
        slow = threading.get_ident() == me  # the calling thread plays the one on a busy core
        time.sleep(0.02 if slow else 0.002)
        with lock:
            per_thread[threading.get_ident()] = per_thread.get(threading.get_ident(), 0) + 1

    kernels.bands(64 * 16, 2, fn, rows=64)
    assert sum(per_thread.values()) == 16
    assert per_thread[me] < max(v for k, v in per_thread.items() if k != me)


def test_a_failing_band_is_raised_after_the_others_finish() -> None:
    from napari_clearnet.core import kernels

    def fn(r0: int, r1: int) -> None:
        if r0 == 0:
            raise ValueError("band 0")

    with pytest.raises(ValueError, match="band 0"):
        kernels.bands(1024, 2, fn, rows=64)


@TWO_CORES
def test_the_kernels_keep_both_threads_when_a_core_is_busy_but_not_the_users_count(
    torch_threads, monkeypatch
) -> None:
    """Banded work takes whichever thread is free, so a busy core costs it a share of one thread,
    not a whole one; torch's own work still drops to the free cores."""
    torch.set_num_threads(threads._DEFAULT)
    with busy_cores(1):
        deadline = time.monotonic() + 5
        while (threads.busy_cores() or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        with threads.adapted() as n:
            assert n < threads._DEFAULT
            assert threads.banded() == min(threads._DEFAULT, threads._cores())
        with threads.capped(1), threads.adapted():
            assert threads.banded() == 1  # a clip's encoder keeps its cores
    torch.set_num_threads(1)  # the user's choice wins
    assert threads.banded() == 1
    torch.set_num_threads(threads._DEFAULT)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.banded() == torch.get_num_threads()
