"""Small shared helpers (atomic output directories, JSON IO)."""
