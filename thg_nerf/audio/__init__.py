"""Audio loading and per-frame audio features, shared by preprocessing and rendering."""
