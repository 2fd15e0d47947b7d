"""Helpers several test files share: test images, loaded methods, result checks, the CLI."""

from __future__ import annotations

import functools
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import napari_clearnet as nc

METHODS = ("clearnet", "dcp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SCRIPT = Path(sys.executable).with_name("clearnet")
#: how to start the installed ``clearnet`` command (or the module, without an install)
CLEARNET = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "napari_clearnet.cli"]
REPO = Path(__file__).resolve().parents[1]


@functools.cache
def dehazer(method: str) -> nc.Dehazer:
    """One loaded method per test session (weights load once)."""
    return nc.load_model(method=method, device="cpu")


def hazy(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    """A small float RGB image whose haze thickens towards the top."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.3, 0.9, h, dtype=np.float32)[:, None, None]
    return (rng.random((h, w, 3), dtype=np.float32) * 0.8 * t + 0.8 * (1 - t)).astype(np.float32)


def hazy_rgb(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """A float RGB image with haze that thickens to the top (values in [0, 1])."""
    rng = np.random.default_rng(seed)
    clean = rng.random((h, w, 3)).astype(np.float32) * 0.8
    t = np.linspace(0.2, 0.9, h, dtype=np.float32)[:, None, None]
    return (clean * t + 0.85 * (1 - t)).astype(np.float32)


def sky_scene() -> np.ndarray:
    """Top half: a smooth bright sky at the airlight with a faint gradient; bottom: hazy ground."""
    x = hazy_rgb(48, 64)
    x[:24] = 0.85 + np.linspace(-0.03, 0.03, 64, dtype=np.float32)[None, :, None]
    return x


def check_result(res: Any, image: Any, spatial: tuple[int, int] | None = None) -> None:
    """The invariants every output keeps, whatever the input (``image``: the input or its shape):
    J has the input's shape and is finite in [0, 1]; t is finite in (0, 1]; A in [0, 1]^3."""
    shape = tuple(image) if isinstance(image, tuple | list) else np.shape(image)
    assert res.image.shape == shape
    assert np.isfinite(res.image).all() and res.image.min() >= 0 and res.image.max() <= 1
    t, a = res.transmission, res.airlight
    assert np.isfinite(t).all() and t.min() > 0 and t.max() <= 1
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 and a.shape[-1] == 3
    if spatial is not None:
        assert t.shape[-2:] == spatial


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    """An 8-bit RGB PNG of noise (folders made as needed)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((*size, 3)) * 180 + 40).astype(np.uint8)).save(path)
    return path


def cli(*args: str | Path, cwd: Path, limit_as: int | None = None, timeout: float = 120) -> Any:
    """``clearnet ARGS`` in a fresh process, as a user runs it (DCP unless the test says otherwise)."""
    argv = [*CLEARNET, *map(str, args)]
    if "--method" not in argv and argv[len(CLEARNET)] == "dehaze":
        argv += ["--method", "dcp"]

    def limits() -> None:
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limits)


def run_dcp(*args: str | Path) -> int:
    """``clearnet dehaze ARGS --method dcp --no-progress`` in this process."""
    from napari_clearnet.cli import main

    return main(["dehaze", *map(str, args), "--method", "dcp", "--no-progress"])


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def png_bytes(w: int, h: int, depth: int, colour: int, idat: bytes | None) -> bytes:
    """A PNG with the given header and image data (``None``: no IDAT chunk at all)."""
    head = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    data = b"" if idat is None else png_chunk(b"IDAT", idat)
    return PNG_SIGNATURE + png_chunk(b"IHDR", head) + data + png_chunk(b"IEND", b"")


def strict_json(path: Path) -> Any:
    """Parse as strict JSON: NaN and Infinity are not JSON."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def write_hazy(folder: Path, n: int, seed: int = 0, gt: Path | None = None) -> None:
    """Hazy images made with the scattering model (depth grows towards the top), RESIDE naming."""
    import torch

    from napari_clearnet import io
    from napari_clearnet.core import physics

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        j = 0.1 + 0.8 * torch.rand(1, 3, 48, 64, generator=g)
        t = torch.linspace(0.3, 0.9, 48).reshape(1, 1, 48, 1).expand(1, 1, 48, 64)
        a = torch.tensor([[0.8, 0.82, 0.85]])
        hazy = physics.haze(j, t, a)[0].permute(1, 2, 0).numpy()
        io.write_image(folder / f"{1000 + i}_1.png", hazy)
        if gt is not None:
            gt.mkdir(parents=True, exist_ok=True)
            io.write_image(gt / f"{1000 + i}.png", j[0].permute(1, 2, 0).numpy())


def dehaze_cpu(x: Any, method: str = "dcp", **kw: Any) -> Any:
    """``napari_clearnet.dehaze`` on the CPU (DCP unless the test says otherwise)."""
    return nc.dehaze(x, method=method, device="cpu", **kw)


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32), dtype: Any = np.uint8) -> Any:
    """An RGB PNG of noise, 8- or 16-bit; returns its pixels."""
    from PIL import Image

    from napari_clearnet import io

    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    arr = (rng.random((*size, 3)) * top).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dtype == np.uint8:
        Image.fromarray(arr).save(path)
    else:
        io.write_image(path, arr.astype(np.float32) / 65535, bit_depth=16)
    return arr


def rgb_scene(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth hazy-looking 8-bit RGB image: a colour gradient under a grey veil (napari tests)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    clear = np.stack([yy, xx, 1 - yy], -1) * 0.8 + 0.05 * rng.random((h, w, 3))
    t = np.exp(-1.5 * xx)[..., None]
    return np.clip(255 * (clear * t + 0.85 * (1 - t)), 0, 255).astype(np.uint8)


def dock(viewer: Any, name: str) -> Any:
    """The plugin's widget ``name``, docked in ``viewer``."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-clearnet", name)
    return widget


def prior_scene(h: int = 96, w: int = 128, seed: int = 0) -> tuple[Any, Any]:
    """A clean image that obeys the dark-channel prior and a depth that grows to the top.

    Every pixel has one colour channel near zero (saturated colours, like foliage and shadows),
    so the clean image's dark channel is ~0; the top rows are so deep that t ~ 0 there and the
    hazy image is the airlight itself, which is where DCP must find A.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    clean = torch.rand((1, 3, h, w), generator=g) * 0.7 + 0.1
    zero = torch.randint(0, 3, (1, 1, h, w), generator=g)
    clean = clean.scatter(1, zero, 0.02)
    rows = torch.linspace(1.0, 0.0, h).reshape(1, 1, h, 1)  # 1 at the top (far), 0 at the bottom
    depth = (rows * 8.0).expand(1, 1, h, w)
    return clean, depth


TINY = REPO / "training" / "configs" / "tiny.yaml"


def train_cli(*args: str | Path) -> int:
    """``python -m training train --config A0 --data A1 --out A2 [more]`` on the CPU, in process."""
    from training.__main__ import main as training_main

    return training_main(["train", "--config", str(args[0]), "--data", str(args[1]), "--out", str(args[2]),
                          "--device", "cpu", "--no-progress", *map(str, args[3:])])


def training_config(tmp_path: Path, edit: dict | None = None, text: str | None = None) -> Path:
    """The tiny training config with ``edit`` ({section: {key: value}}) applied, or ``text``."""
    import yaml

    p = tmp_path / "cfg.yaml"
    if text is not None:
        p.write_text(text)
        return p
    cfg = yaml.safe_load(TINY.read_text())
    for section, values in (edit or {}).items():
        cfg.setdefault(section, {}).update(values)
    p.write_text(yaml.safe_dump(cfg))
    return p



def write_clip(path: Path, n: int = 24, size: tuple[int, int] = (48, 64), rate: Any = None,
               audio: bool = False, gop: int | None = None, rotation: int = 0, crf: int = 18,
               preset: str | None = None) -> Path:
    """An H.264 clip made with PyAV: frame i is a hazy gradient whose red level and a bright bar
    move with i (so frames can be told apart), at ``rate`` (default 12.5 fps); ``audio`` adds an
    AAC sine track as long as the video; ``gop`` sets keyframes every ``gop`` frames (B-frames
    too), so seeking is tested; ``rotation`` is the display matrix a phone records; ``preset``: x264's
    (ultrafast makes long clips quickly)."""
    from fractions import Fraction

    import av

    rate = Fraction(25, 2) if rate is None else Fraction(rate)
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), **({"g": str(gop), "bf": "2"} if gop else {}),
                     **({"preset": preset} if preset else {})}
        if rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=8000)
            a.layout = "mono"
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = 60 + (i * 6) % 160
            img[..., 1] = 120 + 60 * yy / h
            img[..., 2] = 150 + 40 * xx / w
            img[:, (2 * i) % w] = 250
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        if a is not None:
            total, t = int(8000 * n / rate), 0
            while t < total:
                k = min(1024, total - t)
                wave = (0.3 * np.sin(np.arange(t, t + k) / 5)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, t
                t += k
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def clip_facts(path: Path) -> dict[str, Any]:
    """What a player sees of a clip: frames, rate, size, audio codecs and audio packet count."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        facts = {"rate": v.average_rate, "size": (v.codec_context.width, v.codec_context.height),
                 "audio": [a.codec_context.name for a in c.streams.audio],
                 "comment": c.metadata.get("comment")}
        facts["frames"] = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        facts["audio_packets"] = sum(1 for p in c.demux(*c.streams.audio) if p.size) if c.streams.audio else 0
    return facts


def tilted_plane(h: int = 192, w: int = 256, near: float = 40.0, far: float = 300.0,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(clean RGB float32, depth in metres): 8-pixel blocks of saturated colour (one channel at 0.03,
    so the dark-channel prior holds) on a plane tilted away from the camera, its distance growing
    linearly from ``near`` (bottom row) to ``far`` (top row)."""
    g = np.random.default_rng(seed)
    blocks = (h // 8 + 1, w // 8 + 1)
    base = g.random((*blocks, 3)) * 0.7 + 0.1
    np.put_along_axis(base, g.integers(0, 3, blocks)[..., None], 0.03, axis=2)
    clean = np.kron(base, np.ones((8, 8, 1)))[:h, :w].astype(np.float32)
    d = np.broadcast_to(np.linspace(far, near, h, dtype=np.float32)[:, None], (h, w))
    return clean, np.ascontiguousarray(d)


def haze_with(clean: np.ndarray, d: np.ndarray, beta: float, airlight: float = 0.85) -> np.ndarray:
    """``clean`` hazed with t = exp(−β d) and a grey airlight (float32 in [0, 1])."""
    t = np.exp(-beta * d)[..., None]
    return (clean * t + airlight * (1 - t)).astype(np.float32)
