"""Which devices this machine has, and which one a run uses.

One place asks torch what exists, so the CLI, the API and the widget's device list agree: a device
is offered only when it can run, and a device that cannot is refused before any tensor moves.
"""

from __future__ import annotations

import torch

__all__ = ["available_devices", "pick_device"]

#: device types the engine runs on, with the name messages use
_NAMES = {"cpu": "CPU", "cuda": "CUDA", "mps": "Apple MPS", "xpu": "Intel XPU"}
_HELP = "use 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu'"


def _count(kind: str) -> int:
    """How many devices of ``kind`` (a key of ``_NAMES``) this machine can use (0: none)."""
    if kind == "cpu":
        return 1
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        return int(backend is not None and backend.is_available())
    mod = getattr(torch, kind, None)
    try:
        return int(mod.device_count()) if mod is not None and mod.is_available() else 0
    except (RuntimeError, AssertionError, AttributeError):
        return 0


def available_devices() -> list[str]:
    """``auto`` and the device types this machine has, best first after ``auto`` and ``cpu``."""
    return ["auto", "cpu", *(kind for kind in ("cuda", "mps", "xpu") if _count(kind))]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU. Anything else must name a device type
    this machine has (``ValueError`` otherwise, before any tensor moves)."""
    if device is None or (isinstance(device, str) and device.strip() in ("", "auto")):
        return torch.device(next((k for k in ("cuda", "mps") if _count(k)), "cpu"))
    if not isinstance(device, str | torch.device):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}; {_HELP}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r}; {_HELP}") from None
    if dev.type not in _NAMES:
        raise ValueError(f"device {device!r} ({dev.type}) cannot run the engine; {_HELP}")
    if dev.type == "cpu":
        return dev
    name, count = _NAMES[dev.type], _count(dev.type)
    if not count:
        raise ValueError(f"device {device!r} requested but {name} is not available; use 'cpu' or 'auto'")
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"device {device!r} requested but this machine has {count} {name} device(s)")
    return dev
