"""The engine: training loop, evaluation, checkpoints, TensorBoard, distributed set-up, rendering.

``nerflite.engine.train(cfg)`` is what ``train.py`` runs (see ``nerflite.engine.trainer``).
"""

from __future__ import annotations


def train(cfg, run_dir=None):
    """Train the model a composed config describes (``nerflite.engine.trainer.train``)."""
    from nerflite.engine.trainer import train as _train

    return _train(cfg, run_dir)
