"""Speed and scale (issue 6): strips, huge images, batched video, lazy stacks, the GPU path, bench."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_clearnet import engine, physics
from napari_clearnet.cli import main as cli_main

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def clearnet() -> engine.Dehazer:
    return engine.load_model(device="cpu")


@pytest.fixture(scope="module")
def dcp() -> engine.Dehazer:
    return engine.load_model(method="dcp", device="cpu")


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A hazy-looking RGB float32 image: a depth ramp towards a bright airlight plus texture."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(0.2, 1.0, h, dtype=np.float32)[:, None, None]
    clear = rng.random((h, w, 3), dtype=np.float32) * 0.6
    t = np.exp(-1.5 * depth)
    return np.clip(clear * t + 0.9 * (1 - t), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- operators
@pytest.mark.parametrize("size", [1, 3, 7, 9, 15])
def test_min_filter_equals_the_max_pool_reference(size: int) -> None:
    """The doubling running minimum is exact: same numbers as -maxpool(-x) with edge replication."""
    x = torch.rand(2, 1, 23, 31)
    pad = size // 2
    padded = torch.nn.functional.pad(-x, (pad, pad, pad, pad), mode="replicate")
    ref = -torch.nn.functional.max_pool2d(padded, size, stride=1)
    assert torch.equal(physics._min_filter(x, size), ref)


def test_upsample_linear_strips_equal_whole_and_match_interpolate() -> None:
    x = torch.rand(1, 2, 37, 53)
    size = (301, 410)
    whole = physics.upsample_linear(x, size)
    bands = [physics.upsample_linear(x, size, (r, min(301, r + 29))) for r in range(0, 301, 29)]
    strips = torch.cat(bands, -2)
    assert torch.equal(whole, strips)
    ref = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert torch.allclose(whole, ref, atol=1e-5)


# ----------------------------------------------------------------------------- strips
@pytest.mark.parametrize("method", ["clearnet", "dcp"])
def test_strip_processing_equals_single_pass(method: str, clearnet, dcp) -> None:
    model = clearnet if method == "clearnet" else dcp
    img = _scene(203, 257)
    single = model.dehaze(img, strip_pixels=10**9)
    for strip in (257 * 13, 5000, 1):  # 13 rows, a ragged strip height, one row per strip
        striped = model.dehaze(img, strip_pixels=strip)
        np.testing.assert_allclose(striped.image, single.image, atol=1e-5)
        np.testing.assert_allclose(striped.transmission, single.transmission, atol=1e-5)
        np.testing.assert_array_equal(striped.airlight, single.airlight)


def test_strip_pixels_reaches_the_public_dehaze_and_rejects_nonsense(clearnet) -> None:
    img = _scene(64, 80)
    a = engine.dehaze(img, model=clearnet, strip_pixels=300)
    b = engine.dehaze(img, model=clearnet)
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)
    with pytest.raises(ValueError, match="strip_pixels"):
        engine.dehaze(img, model=clearnet, strip_pixels=0)


def test_network_copy_is_channels_last_but_the_model_stays_saveable(clearnet) -> None:
    conv = clearnet.model.stem[0].weight
    assert conv.is_contiguous()  # safetensors can save self.model as it is
    assert clearnet._net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_24_megapixel_image_runs_in_bounded_memory(tmp_path) -> None:
    """6000×4000 uint8 RGB through dehaze() in a fresh process: peak RSS < 3 GB."""
    script = textwrap.dedent(
        """
        import json, resource, numpy as np
        from napari_clearnet import dehaze
        h, w = 4000, 6000
        img = np.empty((h, w, 3), np.uint8)
        img[...] = (np.arange(w) % 200 + 30).astype(np.uint8)[None, :, None]
        img[::7] = 220
        res = dehaze(img, device="cpu")
        ok = bool(np.isfinite(res.image[::97, ::89]).all())
        print(json.dumps({"shape": list(res.image.shape), "t": list(res.transmission.shape), "finite": ok,
                          "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4000, 6000, 3] and out["t"] == [4000, 6000] and out["finite"]
    assert out["peak_mb"] < 3 * 1024, f"peak RSS {out['peak_mb']:.0f} MB"


# ----------------------------------------------------------------------------- video and stacks
def _clip(n: int = 7, h: int = 48, w: int = 64, noise: float = 0.06, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = _scene(h, w, seed)
    frames = base[None] + noise * rng.standard_normal((n, h, w, 3)).astype(np.float32)
    frames *= rng.uniform(0.85, 1.1, (n, 1, 1, 3)).astype(np.float32)  # per-frame exposure flicker
    return np.clip(frames, 0, 1).astype(np.float32)


@pytest.mark.parametrize("kwargs", [{}, {"temporal_smoothing": 0.7}, {"airlight": 0.85},
                                    {"temporal_smoothing": 0.7, "airlight": 0.85}])
def test_batched_frames_equal_frame_by_frame(clearnet, kwargs) -> None:
    clip = _clip()
    one = clearnet.dehaze(clip, batch_size=1, **kwargs)
    batched = clearnet.dehaze(clip, batch_size=3, **kwargs)  # 3 + 3 + 1 frames
    np.testing.assert_allclose(batched.image, one.image, atol=1e-5)
    np.testing.assert_allclose(batched.transmission, one.transmission, atol=1e-5)
    np.testing.assert_allclose(batched.airlight, one.airlight, atol=1e-6)


def test_batched_network_runs_one_forward_per_batch(clearnet, monkeypatch) -> None:
    calls: list[int] = []
    real = clearnet._network

    def counting(low, airlight=None, scale=None):
        calls.append(low.shape[0])
        return real(low, airlight, scale)

    monkeypatch.setattr(clearnet, "_network", counting)
    clearnet.dehaze(_clip(n=5), batch_size=4)
    assert calls == [4, 1]


def test_temporal_smoothing_reduces_airlight_flicker(clearnet) -> None:
    clip = _clip(n=10, noise=0.08)
    raw = clearnet.dehaze(clip).airlight
    smooth = clearnet.dehaze(clip, temporal_smoothing=0.8).airlight
    jitter = lambda a: float(np.abs(np.diff(a, axis=0)).mean())  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(raw)
    np.testing.assert_array_equal(smooth[0], raw[0])  # the first frame has nothing to blend with


def test_temporal_smoothing_also_steadies_the_haze_amount(clearnet) -> None:
    """Frames of one scene whose haze thickens and thins: the network's per-frame haze amount s
    jumps with it; smoothed, it follows the exponential moving average (batched or not)."""
    base = _scene(48, 64, 5)
    t = np.array([0.95, 0.6, 0.9, 0.55, 0.92, 0.6, 0.95], np.float32)[:, None, None, None]
    clip = (base[None] * t + 0.8 * (1 - t)).astype(np.float32)
    raw = np.array([r.scale for _, _, r in clearnet.iter_frames(clip)])
    assert np.ptp(raw) > 0.005  # the trained network does react to the haze amount
    for batch in (1, 4):
        smooth = np.array([r.scale for _, _, r in clearnet.iter_frames(clip, temporal_smoothing=0.8,
                                                                       batch_size=batch)])
        expected = [raw[0]]
        for s_now in raw[1:]:
            expected.append(0.8 * expected[-1] + 0.2 * s_now)
        np.testing.assert_allclose(smooth, expected, rtol=1e-4)
        assert np.abs(np.diff(smooth)).mean() < 0.5 * np.abs(np.diff(raw)).mean()


def test_dask_stack_is_read_batch_by_batch(clearnet) -> None:
    da = pytest.importorskip("dask.array")
    clip = _clip(n=6, h=40, w=52)
    computed: list[int] = []

    def load(block, block_info=None):
        computed.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(clip, chunks=(1, 40, 52, 3)).map_blocks(load, dtype=np.float32)
    frames = clearnet.iter_frames(lazy, batch_size=2)
    first = next(frames)
    assert first[0] == 0 and sorted(set(computed)) == [0, 1]  # only the first batch was read
    rest = list(frames)
    assert [i for i, _, _ in rest] == [1, 2, 3, 4, 5]
    assert sorted(computed) == list(range(6))  # every chunk read exactly once
    np.testing.assert_allclose(rest[-1][2].image, clearnet.run_frame(clip[5]).image, atol=1e-5)


def test_cpu_bfloat16_is_opt_in_and_close(clearnet) -> None:
    assert not clearnet.half and clearnet.provenance()["precision"] == "float32"
    bf16 = engine.load_model(device="cpu", half=True)
    img = _scene(120, 160)
    res = bf16.dehaze(img)
    assert res.provenance["precision"] == "bfloat16"
    ref = clearnet.dehaze(img)
    assert res.image.shape == ref.image.shape
    np.testing.assert_allclose(res.transmission, ref.transmission, atol=5e-2)


# ----------------------------------------------------------------------------- GPU path
@CUDA
def test_cuda_half_precision_matches_cpu(clearnet) -> None:
    img = _scene(300, 420)
    gpu = engine.load_model(device="cuda")
    assert gpu.half
    ref = clearnet.dehaze(img)
    res = gpu.dehaze(img)
    assert res.image.shape == ref.image.shape and res.provenance["precision"] == "float16"
    np.testing.assert_allclose(res.transmission, ref.transmission, atol=3e-2)
    np.testing.assert_allclose(res.image, ref.image, atol=6e-2)


@CUDA
def test_cuda_strips_bound_memory_and_equal_one_pass() -> None:
    img = _scene(1200, 1600)
    gpu = engine.load_model(device="cuda", half=False)
    whole = gpu.dehaze(img, strip_pixels=10**9)
    torch.cuda.reset_peak_memory_stats()
    striped = gpu.dehaze(img, strip_pixels=100_000)
    peak_striped = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    gpu.dehaze(img, strip_pixels=10**9)
    assert peak_striped < torch.cuda.max_memory_allocated()
    np.testing.assert_allclose(striped.image, whole.image, atol=1e-5)


@CUDA
def test_cuda_compiled_model_gives_the_same_output() -> None:
    img = _scene(240, 320)
    plain = engine.load_model(device="cuda", half=False).dehaze(img)
    compiled = engine.load_model(device="cuda", half=False, compile=True)
    assert compiled.compiled
    np.testing.assert_allclose(compiled.dehaze(img).image, plain.image, atol=1e-4)


# ----------------------------------------------------------------------------- bench
def test_bench_cli_json_reports_speed_and_memory(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--sizes", "0.02", "--methods", "clearnet,dcp", "--repeats", "1",
                   "--video", "2x64x48", "--json", "--output", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == report
    assert report["machine"]["torch_threads"] >= 1 and report["machine"]["torch"] == torch.__version__
    rows = {(r["method"], r["label"]): r for r in report["results"]}
    assert set(rows) == {(m, lab) for m in ("clearnet", "dcp") for lab in ("0.02 MP", "video 2x64x48")}
    for r in rows.values():
        assert r["seconds"] > 0 and r["mp_per_s"] == pytest.approx(r["megapixels"] / r["seconds"])
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
        assert r["output_shape"] == r["input_shape"]
    assert "vs_dcp" in report["speedups"]["0.02 MP"]


def test_bench_cli_rejects_bad_options(capsys) -> None:
    assert cli_main(["bench", "--sizes", "big"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert cli_main(["bench", "--methods", "magic", "--sizes", "0.01"]) == 2
    assert "magic" in capsys.readouterr().err
