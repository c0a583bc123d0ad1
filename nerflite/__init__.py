"""nerflite: train NeRF and NeuS scene representations from posed photos and render new views."""

__version__ = "0.1.0"
