"""Optimizer and learning-rate schedule from the trainer config.

The schedule is a pure function of the step (``lr_factor``), wrapped in a ``LambdaLR`` whose state
is plain numbers, so it checkpoints and resumes exactly:

    warm-up   factor = step / warmup_steps                       for step < warmup_steps
    exp       factor = (lr_final / lr) ** p                       p = progress of the decay in [0, 1]
    cosine    factor = r + (1 - r) * (1 + cos(pi p)) / 2          r = lr_final / lr
    constant  factor = 1

Classic NeRF decays geometrically from 5e-4 to 5e-5. A model that defines its own schedule
(``model.lr_lambda(step)`` and ``model.cfg.lr``: NeuS's warm-up then cosine) uses it instead, so
its recipe lives in one place, the model's config.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEDULES = ("exp", "cosine", "constant")


def lr_factor(step: int, lr: float, lr_final: float, schedule: str, warmup_steps: int, decay_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(decay_steps - warmup_steps, 1)
    p = min(max(step - warmup_steps, 0) / span, 1.0)
    ratio = lr_final / lr
    if schedule == "exp":
        return ratio**p
    if schedule == "cosine":
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {schedule!r} (expected one of {SCHEDULES})")


def peak_lr(model: nn.Module, tcfg) -> float:
    """``model.cfg.lr`` for a model with its own schedule (``lr_lambda``, e.g. NeuS), else ``trainer.lr``."""
    return float(model.cfg.lr) if hasattr(model, "lr_lambda") else float(tcfg.lr)


def make_optimizer(model: nn.Module, tcfg) -> torch.optim.Optimizer:
    """Adam over the model's parameters, or over its own groups when it defines
    ``optimizer_groups(lr)`` (instant: the hash tables at a larger rate than the MLPs); the schedule
    then scales every group's rate by the same factor."""
    if hasattr(model, "optimizer_groups"):
        params = model.optimizer_groups(peak_lr(model, tcfg))
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(
        params,
        lr=peak_lr(model, tcfg),
        betas=tuple(tcfg.adam_betas),
        eps=tcfg.adam_eps,
        weight_decay=tcfg.weight_decay,
    )


class _Factor:
    """A picklable step -> factor callable (LambdaLR stores a callable object's attributes)."""

    def __init__(self, lr, lr_final, schedule, warmup_steps, decay_steps):
        self.args = (lr, lr_final, schedule, warmup_steps, decay_steps)

    def __call__(self, step: int) -> float:
        return lr_factor(step, *self.args)


def make_scheduler(optimizer: torch.optim.Optimizer, tcfg, model: nn.Module | None = None):
    """A ``LambdaLR`` over the model's own ``lr_lambda`` when it has one, else over ``lr_factor``."""
    if model is not None and hasattr(model, "lr_lambda"):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, model.lr_lambda)
    if tcfg.schedule not in SCHEDULES:
        raise ValueError(f"trainer.schedule must be one of {SCHEDULES}, got {tcfg.schedule!r}")
    decay = tcfg.decay_steps if tcfg.decay_steps > 0 else tcfg.steps
    fn = _Factor(tcfg.lr, tcfg.lr_final, tcfg.schedule, tcfg.warmup_steps, decay)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def scheduler_state(scheduler) -> dict:
    """The scheduler's state without the callable (which the config rebuilds): plain numbers only."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
