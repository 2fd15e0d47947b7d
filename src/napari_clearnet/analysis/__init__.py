"""What results say about a scene: haze as depth and visibility (``depth``), quality measures
(``metrics``)."""
