"""Choosing what runs: :class:`MethodPicker` (method, model, device) and the input layer choices."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Widget
from napari.layers import Image

from ... import weights
from ...choices import METHOD_TITLES
from ...core.devices import available_devices
from ..layers import Settings

__all__ = ["MethodPicker", "image_layers", "model_choices", "start_message"]


def model_choices() -> list[tuple[str, str]]:
    """Registry models, labelled with whether they are ready or need a download."""
    out = []
    for entry in weights.list_models():
        if entry.bundled:
            state = "bundled"
        elif weights.cached_path(entry) is not None:
            state = "cached"
        else:
            state = f"download {entry.size / 1e6:.1f} MB"
        out.append((f"{entry.name} ({state})", entry.name))
    return out


def image_layers(viewer: Any) -> list[tuple[str, Image]]:
    """The viewer's Image layers as (name, layer) choices."""
    return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, Image)]


class MethodPicker:
    """Method, model (ClearNet only) and device, and the :class:`Settings` they stand for."""

    def __init__(self) -> None:
        self.method = ComboBox(label="method", choices=[(v, k) for k, v in METHOD_TITLES.items()],
                               value="clearnet")
        # read once, and again after a run (a download changes a label): napari asks for the
        # choices on every layer event, and the registry is a file with checksums behind it
        self._models = model_choices()
        names = [name for _, name in self._models]
        # a registry of your own (CLEARNET_REGISTRY) need not hold the bundled default
        default = weights.DEFAULT_MODEL if weights.DEFAULT_MODEL in names or not names else names[0]
        self.model = ComboBox(label="model", choices=lambda _w: self._models, value=default,
                              tooltip="models marked 'download' are fetched from the Hugging Face Hub")
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.method.changed.connect(lambda v: setattr(self.model, "enabled", v == "clearnet"))

    @property
    def widgets(self) -> list[Widget]:
        return [self.method, self.model, self.device]

    def refresh_models(self) -> None:
        """Read the registry and the cache again (after a download, or a new registry)."""
        self._models = model_choices()
        self.model.reset_choices()

    def settings(self, **options: Any) -> Settings:
        """The chosen method, model and device, with the widget's run ``options``."""
        return Settings(self.method.value, self.model.value, self.device.value, **options)


def start_message(settings: Settings) -> str:
    """Say up front when the first run will download a model (it can take a while)."""
    if settings.method != "clearnet":
        return "starting…"
    name = settings.model or weights.DEFAULT_MODEL
    try:
        entry = weights.get_entry(name)
    except KeyError:
        return "loading the model…"
    if not entry.bundled and weights.cached_path(entry) is None:
        return f"downloading {name} ({entry.size / 1e6:.1f} MB) from the Hugging Face Hub…"
    return "loading the model…"
