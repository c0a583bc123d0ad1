"""How the entry points (train.py, render.py) end on an error: one line, no traceback.

Whatever stops a command (bad data, a bad config key or value, a bad run folder or checkpoint,
and anything unexpected) ends as ONE line ``error: ...`` on stderr, naming the file or key, with
exit status 1 (130 for Ctrl-C). ``NERFLITE_DEBUG=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) shows the
full traceback instead.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable

DEBUG_ENV = "NERFLITE_DEBUG"  # set to 1 for full tracebacks


def debug_enabled() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in (DEBUG_ENV, "HYDRA_FULL_ERROR"))


class EntryPoint:
    """The error handling of one command. ``job`` wraps the ``@hydra.main`` task function (an error in
    a job is reported at once, as one line; the other jobs of a multirun still run), ``run`` runs the
    command (errors before any job, e.g. composing the config, are reported the same way)::

        entry = EntryPoint()

        @hydra.main(...)
        @entry.job
        def main(cfg): ...

        entry.run(main)
    """

    def __init__(self):
        self.failed = 0  # jobs that ended in an error
        self.debug = debug_enabled()  # tracebacks instead of one-line reports

    def job(self, task: Callable):
        @functools.wraps(task)
        def wrapped(cfg):
            try:
                return task(cfg)
            except Exception as e:  # noqa: BLE001  (reported as one line; NERFLITE_DEBUG=1 for the traceback)
                if self.debug:
                    raise
                self.failed += 1
                print(f"error: {_job_prefix()}{error_line(e)}", file=sys.stderr)
                return None

        return wrapped

    def run(self, main: Callable[[], object]) -> None:
        self.debug = debug = debug_enabled()
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
        try:
            main()
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001  (every error ends in one line; NERFLITE_DEBUG=1 for the traceback)
            if debug:
                raise
            print(f"error: {error_line(e)}", file=sys.stderr)
            sys.exit(1)
        if self.failed:
            sys.exit(1)


def _job_prefix() -> str:
    """'job N (overrides): ' inside a multirun, else ''."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return f"job {hc.job.num} ({' '.join(hc.overrides.task)}): "
    except (ValueError, ImportError):
        pass
    return ""


def error_line(e: BaseException) -> str:
    """``e`` as one line naming what is wrong (the file, the key)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nerflite.data.scene import DatasetError
    from nerflite.engine.checkpoint import CheckpointError

    if isinstance(e, (DatasetError, CheckpointError)):
        return one_line(str(e))
    if isinstance(e, HydraException):  # composition: a misspelt key, a wrong type, a missing option
        return _hydra_line(e)
    if isinstance(e, OmegaConfBaseException):
        return _omegaconf_line(e)
    if isinstance(e, OSError) and e.filename is not None:  # e.g. an output folder that cannot be written
        return f"{e.filename}: {e.strerror or one_line(str(e))}"
    if isinstance(e, (ValueError, OSError)) or type(e).__module__.startswith("nerflite"):
        return one_line(str(e))
    return f"{type(e).__name__}: {one_line(str(e))} (unexpected; {DEBUG_ENV}=1 shows the traceback)"


_NEEDS_TIME = "dynamic models need a time per frame (dataset=dnerf, nerfies, or transforms.json with time)"
_STATIC = "NeuS reconstructs a static surface: a dynamic capture needs model=dnerf, hypernerf or dynamic_instant"
PAIR_HINT = {"dnerf": _NEEDS_TIME, "hypernerf": _NEEDS_TIME, "dynamic_instant": _NEEDS_TIME,
             "neus": _STATIC, "neus_instant": _STATIC}  # why a model has no preset for some datasets
_MODELS = "nerf|neus|instant|neus_instant|dnerf|hypernerf|dynamic_instant"


def _hydra_line(e) -> str:
    """Hydra's first line, then the OmegaConf cause, then Hydra's further advice in parentheses."""
    from omegaconf.errors import OmegaConfBaseException

    text = str(e).split("\nConfig search path:")[0]
    missing = re.search(rf"Could not find 'preset/(\w+?)_({_MODELS})'", text)
    if missing:  # a dataset x model pair with no preset: a model that does not train on that data
        data, model = missing.groups()
        return (f"model={model} does not train on dataset={data} (no conf/preset/{data}_{model}.yaml): "
                f"{PAIR_HINT.get(model, 'pick another model for this dataset')}")
    if getattr(e, "override", None):  # a command-line override that does not parse
        text = f"bad override {e.override!r}: {text}"
    first, _, rest = text.partition("\n")
    line = first.strip().rstrip(".")
    if isinstance(e.__cause__, OmegaConfBaseException):
        line = f"{line}: {_omegaconf_line(e.__cause__, known=line)}"
    rest = one_line(rest) if rest.strip() else ""
    return f"{line} ({rest.rstrip('.')})" if rest else line


def _omegaconf_line(e, known: str = "") -> str:
    """An OmegaConf error's message without its reference_type / object_type lines, with its key
    (unless ``known``, the text before it, names it)."""
    msg = one_line(str(getattr(e, "msg", None) or e).split("\n    full_key:")[0])
    key = getattr(e, "full_key", None)
    return f"{msg} (key {key})" if key and key not in msg and key not in known else msg


def one_line(text: str) -> str:
    """Lines joined into one: an indented list after a line ending in ':' becomes 'a, b, c'."""
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if listing and raw[:1].isspace():
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            continue
        listing = line.endswith(":")
        parts.append(line)
    return " ".join(p if p.endswith((".", ":", ";")) or p is parts[-1] else p + ";" for p in parts) or "(no message)"
