"""Settings that compose (right keys, right types) but cannot work: each rejected with one line
naming the key, before anything is built (``ValueError``; train.py / render.py show it as one line)."""

from __future__ import annotations

import math

import torch

# key -> (lowest allowed value, whether the value must exceed it)
TRAINER_LIMITS = {
    "steps": (0, False),
    "max_minutes": (0.0, False),
    "eval_every": (0, False),
    "eval_images": (1, False),
    "final_eval_images": (0, False),
    "ckpt_every": (1, False),
    "keep_ckpts": (0, False),
    "log_every": (1, False),
    "cpu_threads": (0, False),
    "lr": (0.0, True),
    "lr_final": (0.0, False),
    "warmup_steps": (0, False),
    "decay_steps": (0, False),
    "adam_eps": (0.0, True),
    "weight_decay": (0.0, False),
    "grad_clip": (0.0, False),
    "mesh_res": (2, False),
}
RENDER_LIMITS = {
    "frames": (1, False),
    "fps": (1, False),
    "downscale": (0.0, True),
    "width": (0, False),
    "chunk": (0, False),
    "mesh_res": (2, False),
}
AMP_DTYPES = ("bf16", "fp16")


def out_of_range(node, limits: dict, prefix: str) -> list[str]:
    """'prefix.key must be >= x, got y' for each value of ``node`` outside its limit."""
    problems = []
    for key, (low, strict) in limits.items():
        value = node.get(key) if hasattr(node, "get") else getattr(node, key, None)
        if value is None:
            continue
        if (value <= low) if strict else (value < low):
            problems.append(f"{prefix}{key} must be {'>' if strict else '>='} {low}, got {value}")
    return problems


def check_train_config(cfg) -> None:
    """The trainer's settings (see ``TrainerConfig``)."""
    t = cfg.trainer
    problems = out_of_range(t, TRAINER_LIMITS, "trainer.")
    if t.amp_dtype not in AMP_DTYPES:
        problems.append(f"trainer.amp_dtype must be one of {AMP_DTYPES}, got {t.amp_dtype!r}")
    bad = [m for m in t.get("test_minutes", []) or [] if not m > 0]
    if bad:
        problems.append(f"trainer.test_minutes must hold minutes > 0, got {list(t.test_minutes)}")
    betas = list(t.adam_betas)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        problems.append(f"trainer.adam_betas must be two values in [0, 1), got {betas}")
    if problems:
        raise ValueError("; ".join(problems))


def check_render_config(cfg) -> None:
    """render.py's settings (see ``RenderConfig``)."""
    problems = out_of_range(cfg, RENDER_LIMITS, "")
    try:
        render_time(cfg.get("time"))
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise ValueError("; ".join(problems))
    check_device(cfg.device, "device")


def render_time(value) -> float | str | None:
    """render.py's ``time``: None (unset), "play", or a moment in [0, 1] as a float."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text == "play":
        return "play"
    try:
        moment = float(text)
    except ValueError:
        moment = math.nan
    if not 0.0 <= moment <= 1.0:  # also NaN and words
        raise ValueError(f'time must be in [0, 1] or "play", got {text}')
    return moment


def check_device(requested: str, key: str) -> None:
    """``auto``, ``cpu``, or a CUDA device that exists here."""
    if requested in ("auto", "cpu"):
        return
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ValueError(f"{key}={requested}: not a device (expected auto, cpu, cuda or cuda:N)") from e
    if device.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise ValueError(f"{key}={requested}: no CUDA GPU here (torch.cuda.is_available() is false); use auto or cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{key}={requested}: there are {torch.cuda.device_count()} CUDA device(s) here")
