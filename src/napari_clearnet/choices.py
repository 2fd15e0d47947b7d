"""The choices the core accepts, defined once for the API, the CLI and the widgets."""

from __future__ import annotations

__all__ = ["BIT_DEPTHS", "FORMATS", "METHODS", "METHOD_LABELS", "METHOD_TITLES"]

#: dehazing methods: the ClearNet network, and the classic Dark Channel Prior
METHODS = ("clearnet", "dcp")
#: how layer names and messages name a method
METHOD_LABELS = {"clearnet": "ClearNet", "dcp": "DCP"}
#: how menus and widgets name a method
METHOD_TITLES = {"clearnet": "ClearNet", "dcp": "Dark Channel Prior"}
#: output formats of a batch; ``same`` keeps each input's own format
FORMATS = ("png", "jpg", "tif", "same")
#: output bit depths of a batch; ``same`` keeps 16 bits where the input and the format have them
BIT_DEPTHS = ("8", "16", "same")
