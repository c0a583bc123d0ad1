"""Small helpers that depend on nothing of nerflite (layer 0)."""
