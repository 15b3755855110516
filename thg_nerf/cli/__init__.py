"""The ``thg-nerf`` command line."""
