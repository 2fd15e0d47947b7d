"""Helpers every layer may use: option spelling and number checks (``validate``), safe files
(``files``: atomic writes, fingerprints). Nothing here imports the rest of the package."""
