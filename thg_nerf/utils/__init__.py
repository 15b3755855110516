"""Small shared helpers (atomic output directories, JSON IO, video IO, process memory)."""
