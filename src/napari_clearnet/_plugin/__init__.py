"""The napari plugin: layers, the video reader, sample data, the live preview and the dock widgets.
The only part of the package that imports napari and Qt; entry points are in ``napari.yaml``."""
