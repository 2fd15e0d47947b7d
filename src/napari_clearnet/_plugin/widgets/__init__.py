"""The dock widgets, one per file: Dehaze (``dehaze``), Transmission map (``transmission``),
Airlight (``airlight``), Compare (``compare``) and Haze depth (``depth``), built from a
:class:`~.picker.MethodPicker` (method, model, device) and a :class:`~.runner.JobRunner` (Run,
Cancel, progress, the worker)."""

from .airlight import AirlightWidget
from .compare import CompareWidget
from .dehaze import DehazeWidget
from .depth import HazeDepthWidget
from .picker import MethodPicker
from .runner import JobRunner, RunError
from .transmission import TransmissionWidget

__all__ = ["AirlightWidget", "CompareWidget", "DehazeWidget", "HazeDepthWidget", "JobRunner", "MethodPicker",
           "RunError", "TransmissionWidget"]
