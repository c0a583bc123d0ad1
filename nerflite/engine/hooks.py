"""Per-step hooks of the training loop: things that look at the model between steps (the live
viewer) and may hold training back (pause), without the loop knowing what they are.

A hook has ``after_step(step, model, scalars)`` (``step`` completed steps; ``scalars`` holds
all logged scalars on log steps and is empty otherwise: the step never reads the device back
for a hook), ``paused() -> bool``,
``idle(step, model)`` (called repeatedly while paused) and ``close()``. A hook that raises is
dropped with a warning: training goes on.
"""

from __future__ import annotations

import warnings

from omegaconf import DictConfig

from nerflite.viewer.config import ViewerConfig


class StepHooks:
    """The hooks of one run, called in order; see the module docstring."""

    def __init__(self, hooks: list | None = None):
        self.hooks = list(hooks or [])

    @staticmethod
    def from_config(cfg: DictConfig, scene, model, is_main: bool) -> StepHooks:
        """The hooks ``cfg`` asks for: the live viewer with ``viewer.enabled`` (rank 0 only)."""
        hooks = []
        vcfg = cfg.get("viewer")
        if is_main and vcfg is not None and vcfg.enabled:
            from nerflite.engine.setup import to_dataclass
            from nerflite.viewer.launch import start_viewer

            chunk = int(cfg.model.get("chunk", 4096))
            viewer = start_viewer(to_dataclass(vcfg, ViewerConfig), scene, model, chunk, int(cfg.trainer.steps))
            if viewer is not None:
                hooks.append(viewer)
        return StepHooks(hooks)

    def after_step(self, step: int, model, scalars: dict) -> None:
        for hook in list(self.hooks):
            self._call(hook, "after_step", step, model, scalars)

    def wait_while_paused(self, step: int, model, stop=lambda: False) -> bool:
        """Block while a hook pauses training (until ``stop()`` is true); whether it waited."""
        waited = False
        while not stop() and any(self._call(h, "paused") for h in list(self.hooks)):
            waited = True
            for hook in list(self.hooks):
                self._call(hook, "idle", step, model)
        return waited

    def close(self) -> None:
        for hook in list(self.hooks):
            self._call(hook, "close")
        self.hooks.clear()

    def _call(self, hook, name: str, *args):
        try:
            return getattr(hook, name)(*args)
        except Exception as e:  # noqa: BLE001  (a hook must never stop training)
            warnings.warn(f"{type(hook).__name__}.{name}: {e!r}; hook turned off, training goes on", stacklevel=3)
            if hook in self.hooks:
                self.hooks.remove(hook)
                if name != "close":
                    self._call(hook, "close")
            return None
