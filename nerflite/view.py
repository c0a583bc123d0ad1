"""Open a finished run in the live browser viewer:

    python -m nerflite.view run=outputs/<name>/<date_time> [port=8080] [ckpt=FILE] [host=...] [max_res=...]

Loads the run's newest checkpoint (or ``ckpt``), serves the viewer (docs/viewer.md) and renders
whatever the browsers ask for until Ctrl-C. Keys: ``nerflite.viewer.config.ViewConfig``.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import fields

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nerflite.engine.cli import debug_enabled, error_line
from nerflite.engine.distributed import pick_device
from nerflite.engine.render import load_run
from nerflite.viewer.config import ViewConfig
from nerflite.viewer.launch import start_viewer
from nerflite.viewer.server import Viewer


def parse_args(argv: list[str]) -> ViewConfig:
    """``key=value`` arguments -> a ``ViewConfig`` (an unknown key or a wrong type: ValueError)."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ValueError(f"arguments are key=value, got {bad[0]!r}")
    node = OmegaConf.structured(ViewConfig)
    for arg in argv:  # one at a time, so that an error names its argument
        try:
            node = OmegaConf.merge(node, OmegaConf.from_dotlist([arg]))
        except OmegaConfBaseException as e:
            keys = ", ".join(f.name for f in fields(ViewConfig) if f.name != "enabled")
            known = f" (keys: {keys})" if "not in" in str(e) else ""
            raise ValueError(f"{arg}: {str(e).splitlines()[0]}{known}") from None
        except Exception as e:  # noqa: BLE001  (yaml's parser errors: a value that does not parse)
            raise ValueError(f"{arg}: not a value ({str(e).splitlines()[0]})") from None
    try:
        cfg = OmegaConf.to_object(node)
    except ValueError as e:  # a range check of ViewerConfig; here its keys have no `viewer.` prefix
        raise ValueError(str(e).removeprefix("viewer.")) from None
    if not cfg.run:
        raise ValueError("run=<run folder> is required (outputs/<name>/<date_time>)")
    return cfg


def open_run(cfg: ViewConfig) -> tuple[Viewer | None, object]:
    """(viewer or None when it could not start, model) of the run ``cfg`` names."""
    device = pick_device(cfg.device)
    run_cfg, scene, model, path = load_run(cfg.run, cfg.ckpt or None, device)
    chunk = int(run_cfg.model.get("chunk", 4096))
    viewer = start_viewer(cfg, scene, model, chunk, total_steps=None, status=f"{cfg.run} ({path.name})")
    if viewer is not None:
        digits = re.findall(r"\d+", path.stem)
        viewer.step = int(digits[-1]) if digits else 0
    return viewer, model


def serve(viewer: Viewer, model, stop: threading.Event | None = None) -> None:
    """Render for the browsers until ``stop`` is set (or Ctrl-C), then close the viewer."""
    try:
        while stop is None or not stop.is_set():
            viewer.idle(viewer.step, model)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
        viewer, model = open_run(cfg)
    except Exception as e:  # noqa: BLE001  (one line; NERFLITE_DEBUG=1 for the traceback)
        if debug_enabled():
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 1
    if viewer is None:
        return 1
    print("Ctrl-C to stop")
    serve(viewer, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
