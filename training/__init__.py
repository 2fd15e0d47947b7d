"""Training, evaluation and export of ClearNet weights (``python -m training --help``).

Uses the package's one model definition (:mod:`napari_clearnet.core.model`) and physics, so what is
trained is exactly what the plugin runs.
"""
