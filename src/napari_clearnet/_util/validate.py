"""Checks every entry point shares: option names in messages, numbers, the dehazing parameters,
dataclass configs, and JSON that stays valid JSON.

Messages name an option the way the caller spelled it: ``sky_protection`` when Python called,
``--sky-protection`` inside :func:`cli_spelling` (the command line). One mechanism per class of
mistake: a config (training YAML, the ClearNet config inside a weights
file) is checked field by field against its dataclass annotations plus an explicit range table, so
a wrong type or an out-of-range value is a one-line ``ValueError`` naming the field, before
anything is allocated or trained. JSON we write goes through :func:`json_text`, which writes
non-finite numbers as ``null`` (Python's ``json`` would write ``NaN``/``Infinity``, which is not
JSON).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "MAX_STRENGTH",
    "MODEL_RANGES",
    "Interval",
    "check_airlight",
    "check_config",
    "check_number",
    "check_sky_protection",
    "check_strength",
    "check_t0",
    "cli_spelling",
    "finite_or_none",
    "json_text",
    "option",
]


# ----------------------------------------------------------------------------------------- spelling
_CLI = contextvars.ContextVar("napari_clearnet_cli_spelling", default=False)
#: options a message names with a value or a phrase: (Python API, command line)
_PHRASES = {
    "value_range_hint": ("value_range=(low, high)", "--value-range LOW,HIGH"),
    "value_range_01_hint": ("value_range=(0, 1)", "--value-range 0,1"),
    "value_range_255_hint": ("value_range=(0, 255)", "--value-range 0,255"),
    "channel_axis_none": ("channel_axis=None", "--channel-axis none"),
    "overwrite": ("overwrite=True", "--overwrite"),
    "skip_existing": ("skip_existing=True", "--skip-existing"),
    "resume": ("resume=True", "--skip-existing"),
    "out_dir": ("out_dir", "-o"),
}


def option(key: str, value: Any = None) -> str:
    """How a message names an option: the Python argument, or inside :func:`cli_spelling` the
    command-line flag (``option("sky_protection")`` -> ``sky_protection`` / ``--sky-protection``;
    ``option("channel_axis", 0)`` -> ``channel_axis=0`` / ``--channel-axis 0``)."""
    cli = _CLI.get()
    if key in _PHRASES:
        return _PHRASES[key][cli]
    if cli:
        flag = "--" + key.replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return key if value is None else f"{key}={value!r}"


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Messages raised inside name command-line flags instead of Python arguments."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


# --------------------------------------------------------------------------------------------- JSON
def finite_or_none(obj: Any) -> Any:
    """``obj`` with NaN/±inf floats replaced by None and numpy values made plain Python."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return finite_or_none(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return str(obj)


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always gives valid JSON: non-finite numbers become ``null``."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


# ------------------------------------------------------------------------------------------ numbers
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A range like ``"[0, 1)"`` or ``"(0, inf)"``: brackets say closed or open ends."""

    lo: float
    hi: float
    lo_open: bool
    hi_open: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        m = _INTERVAL.match(text)
        if not m:
            raise ValueError(f"bad interval {text!r}")
        return cls(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")")

    def __contains__(self, v: float) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        def fmt(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'(' if self.lo_open else '['}{fmt(self.lo)}, {fmt(self.hi)}{')' if self.hi_open else ']'}"


def check_number(
    value: Any, name: str, interval: str | Interval | None = None, *, integer: bool = False,
    allow_none: bool = False,
) -> Any:
    """``value`` as a float (or int with ``integer``) inside ``interval``, else a ``ValueError``
    naming ``name``. Integral floats (``1e6``) count as integers; bools and strings never do."""
    if value is None and allow_none:
        return None
    what = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if integer:
        if not v.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        v = int(v)
    if interval is not None:
        iv = Interval.parse(interval) if isinstance(interval, str) else interval
        if v not in iv:
            if iv.lo == iv.hi:
                raise ValueError(f"{name} must be {iv.lo:g}, got {value!r}")
            raise ValueError(f"{name} must be in {iv}, got {value!r}")
    return v


# ------------------------------------------------------------------------------ dehazing parameters
#: the largest haze strength accepted (3 = three times the estimated optical depth)
MAX_STRENGTH = 3.0


def check_t0(t0: Any) -> float | None:
    """``t0`` (the lower bound of t in the recovery): None, or a finite number in [0, 1]."""
    return check_number(t0, option("t0"), "[0, 1]", allow_none=True)


def check_strength(strength: Any) -> float:
    """A haze strength in [0, MAX_STRENGTH] (0 = no change, 1 = as estimated)."""
    try:
        ok = 0.0 <= float(strength) <= MAX_STRENGTH
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"{option('strength')} must be a number in [0, {MAX_STRENGTH:g}] (0 = no change, 1 = the "
            f"model's estimate, >1 = more), got {strength!r}"
        )
    return float(strength)


def check_sky_protection(k: Any) -> float:
    """A sky protection K in [0, 1] (0 = off)."""
    name = option("sky_protection")
    v = check_number(k, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (0 = off, 0.1-0.2 typical), got {k}")
    return v


def check_airlight(airlight: Any) -> np.ndarray:
    """A fixed airlight A: one or three finite numbers in (0, 1], as three float32 values."""
    try:
        a = np.asarray(airlight, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        a = np.zeros(0, np.float32)
    if a.size == 1:
        a = np.repeat(a, 3)
    if a.size != 3 or not np.isfinite(a).all() or a.min() <= 0 or a.max() > 1:
        raise ValueError(f"{option('airlight')} must be one or three numbers in (0, 1], got {airlight!r}")
    return a


# ------------------------------------------------------------------------------------------ configs
#: ranges of the ClearNet config fields (``prior.*`` are the Dark Channel Prior's); they bound what
#: a weights file or a training config may ask for before any tensor is allocated
MODEL_RANGES: dict[str, str] = {
    "widths": "[1, 4096]",
    "in_channels": "[4, 4]",  # RGB + the prior's transmission: what the network is fed
    "working_size": "[16, 8192]",
    "t0": "[0, 1]",
    "t_min": "(0, 1)",
    "max_log_scale": "(0, 20]",
    "min_log_scale": "[-20, 0)",
    "max_residual": "[0, 20]",
    "airlight_range": "[0, 1]",
    "upsample_radius": "[0, 1024]",
    "upsample_eps": "(0, inf)",
    "format_version": "[1, 1000]",
    "prior.patch": "[1, 1023]",
    "prior.omega": "(0, 1]",
    "prior.t0": "(0, 1)",
    "prior.top_fraction": "(0, 1]",
    "prior.guided_radius": "[1, 100000]",
    "prior.guided_eps": "(0, inf)",
    "prior.sky_k": "[0, 1]",
}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is dict:
        return "a mapping"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}s"
        return f"a list of {len(args)} " + "/".join(_describe(a) for a in dict.fromkeys(args)) + "s"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, name: str, ranges: Mapping[str, str], key: str) -> Any:
    """``value`` checked against annotation ``tp`` (and ``ranges[key]``), converted."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, name, ranges, key)
            except ValueError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ValueError(f"{name} must be {_describe(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name} must be {_describe(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise ValueError(f"{name} must be {_describe(tp)}, got {value!r}")
            items = list(args)
        return tuple(_convert(v, t, f"{name}[{i}]", ranges, key) for i, (v, t) in enumerate(zip(value, items,
                                                                                                strict=True)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        return {_convert(k, kt, f"{name} key", ranges, ""): _convert(v, vt, f"{name}.{k}", ranges, key)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        sub = {k[len(key) + 1:]: r for k, r in ranges.items() if k.startswith(key + ".")}
        return check_config(tp, value, name, sub)
    if tp is bool:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return bool(value)
    if tp in (int, float):
        return check_number(value, name, ranges.get(key), integer=tp is int)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value


def check_config(cls: type, data: Any, section: str, ranges: Mapping[str, str] | None = None) -> dict:
    """Check a mapping meant for dataclass ``cls``: known keys, types from the annotations, and
    ``ranges`` (field name, or ``field.subfield`` for nested dataclasses -> interval text; for
    lists the interval applies to each item). Returns the converted mapping; raises one-line
    ``ValueError`` messages that name ``section.field``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{section} must be a mapping of settings, got {type(data).__name__} {data!r}")
    ranges = ranges or {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ValueError(f"unknown {section} keys {unknown}; known: {sorted(known)}")
    out = {}
    for k, v in data.items():
        out[k] = _convert(v, hints[k], f"{section}.{k}", ranges, k)
    return out
