"""Live browser viewer (viser) for training runs and finished runs: docs/viewer.md.

``nerflite.viewer.config`` (the settings) imports nothing heavy; ``nerflite.viewer.server`` holds
the viser side and ``nerflite.viewer.frames`` what is rendered and when.
"""
