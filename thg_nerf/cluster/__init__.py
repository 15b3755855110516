"""Fitting many people at once on a Ray cluster (``thg-nerf fit-many``)."""
