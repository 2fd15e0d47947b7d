"""The package version: one place, read by hatch and by the provenance of every output."""

__version__ = "0.1.0"
