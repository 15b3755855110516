"""Rendering: rays, occupancy-grid volume rendering, pose paths and the TalkingHead API."""
