"""Starting the viewer: a free port, the viser server in a thread with a timeout, the URL printed;
any failure is a warning, never an error (the viewer must not stop training)."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import socket
import threading
import warnings

from nerflite.data.scene import Scene
from nerflite.models.base import Model
from nerflite.viewer.config import ViewerConfig
from nerflite.viewer.server import Viewer


def free_port(host: str, port: int, tries: int = 100) -> int:
    """The first port from ``port`` on that ``host`` can bind (as the server will: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for p in range(port, port + tries) if port else [0]:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, p))
                return p
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise OSError(f"cannot listen on {host}:{p} ({e.strerror})") from None
    raise OSError(f"ports {port}..{port + tries - 1} on {host} are all in use")


def _start_viser(host: str, port: int, timeout_s: float):
    """A ``viser.ViserServer`` on host:port, its own banner silenced; None when it does not come up
    within ``timeout_s`` (it then keeps trying in a daemon thread that exits with the process)."""
    box: dict = {}

    def run():
        try:
            import viser

            logging.getLogger("websockets").setLevel(logging.WARNING)  # no INFO line per open / close

            with contextlib.redirect_stdout(io.StringIO()):
                box["server"] = viser.ViserServer(host=host, port=port, label="nerflite", verbose=False)
        except BaseException as e:  # noqa: B036  (reported by the caller)
            box["error"] = e

    thread = threading.Thread(target=run, name="viewer-start", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "error" in box:
        raise box["error"]
    return box.get("server")


def start_viewer(cfg: ViewerConfig, scene: Scene, model: Model, chunk: int, total_steps: int | None,
                 status: str = "", timeout_s: float = 20.0) -> Viewer | None:
    """Start a viewer and print its URL; on any failure a warning and None (training goes on)."""
    try:
        port = free_port(cfg.host, cfg.port)
        if cfg.port and port != cfg.port:
            print(f"viewer: port {cfg.port} is in use, using {port}")
        server = _start_viser(cfg.host, port, timeout_s)
        if server is None:
            raise OSError(f"the server did not start within {timeout_s:.0f} s")
        try:
            viewer = Viewer(server, cfg, scene, model, chunk, total_steps, status)
        except BaseException:
            with contextlib.redirect_stdout(io.StringIO()):
                server.stop()
            raise
    except Exception as e:  # noqa: BLE001  (the viewer must never stop training)
        warnings.warn(f"viewer: not started ({e}); training goes on without it", stacklevel=2)
        return None
    bound = server.get_port()
    if port and bound != port:
        print(f"viewer: port {port} was taken meanwhile, using {bound}")
    host = "localhost" if cfg.host in ("127.0.0.1", "localhost", "0.0.0.0", "::1", "::") else cfg.host
    print(f"viewer: http://{host}:{bound}")
    return viewer
