"""Live browser viewer (viser) for training runs and finished runs: docs/viewer.md.

``config`` (the settings) imports nothing heavy; ``launch.start_viewer`` starts one, ``server``
holds the viser side, ``frames`` what is rendered and when, ``client`` a headless test client.
"""
