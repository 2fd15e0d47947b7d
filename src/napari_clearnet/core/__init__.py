"""The numerical core: arrays in, frames dehazed, results out. numpy and torch only: no files, no
Qt, no argparse, and nothing from the rest of the package (see ``docs/architecture.md``)."""
