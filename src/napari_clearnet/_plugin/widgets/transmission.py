"""The Transmission map widget: t(x) in [0, 1] (1 = clear, 0 = only haze), optionally the raw one."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox

from ..layers import Settings
from .panel import LayerPanel, Plan, layer_job

__all__ = ["TransmissionWidget"]


class TransmissionWidget(LayerPanel):
    """Add the transmission map t(x) in [0, 1] (1 = clear, 0 = only haze), optionally the raw one."""

    run_text = "Estimate transmission"

    def _add_controls(self) -> None:
        self.raw = CheckBox(text="also the raw (unrefined) map", value=False)
        self.append(self.raw)

    def plan(self, layer: Any, settings: Settings) -> Plan:
        outputs = ["transmission"] + ["raw transmission"] * self.raw.value
        return Plan(layer_job, (layer, settings, outputs), self.add_layers)
