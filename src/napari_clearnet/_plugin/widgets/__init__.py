"""The dock widgets, one per file: Dehaze (``dehaze``), Transmission map (``transmission``),
Airlight (``airlight``), Compare (``compare``) and Haze depth (``depth``), built from a
:class:`~.picker.MethodPicker` (method, model, device) and a :class:`~.runner.JobRunner` (Run,
Cancel, progress, the worker)."""

from .compare import CompareWidget
from .dehaze import AirlightWidget, DehazeWidget, TransmissionWidget
from .depth import HazeDepthWidget

__all__ = ["AirlightWidget", "CompareWidget", "DehazeWidget", "HazeDepthWidget", "TransmissionWidget"]
