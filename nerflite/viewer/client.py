"""A minimal headless viewer client speaking viser's WebSocket protocol, for tests and benchmarks.

Server -> client: each WebSocket message is ``[8 bytes: msgpack size][8 bytes: zstd size]
[zstd-compressed msgpack {"messages": [...], ...}][raw binary buffers]``; each message is a dict
with its ``type`` (``BackgroundImageMessage`` carries a frame as PNG / JPEG bytes). Client ->
server: one msgpack dict per message (``ViewerCameraMessage``, ``GuiUpdateMessage``,
``SceneNodeClickMessage``). The WebSocket subprotocol names viser's version.
"""

from __future__ import annotations

import queue
import threading

import imageio.v3 as iio
import msgspec
import numpy as np
import zstandard

from nerflite.viewer.frames import BrowserCamera, rotation_from_wxyz


def decode(raw: bytes) -> list[dict]:
    """The messages of one server WebSocket message (binary placeholders left as they are)."""
    size = int.from_bytes(raw[0:8], "little")
    csize = int.from_bytes(raw[8:16], "little")
    inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + csize], max_output_size=size)
    return list(msgspec.msgpack.decode(inner)["messages"])


class ViewerClient:
    """Connects to a viewer, sends cameras and GUI clicks, collects frames (decoded, uint8)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        import viser
        from websockets.sync.client import connect

        self.ws = connect(url, subprotocols=[f"viser-v{viser.__version__}"], open_timeout=timeout_s,
                          max_size=None, compression=None)
        self.frames: queue.Queue = queue.Queue()
        self.formats: list[str] = []
        self.gui: dict[str, dict] = {}  # label -> the GUI element's creation message (uuid, props, value)
        self.messages: list[str] = []  # types of every message received
        self.last: dict[str, dict] = {}  # type -> the last message of that type
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, name="viewer-client", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self.ws:
                for msg in decode(raw):
                    kind = msg.get("type", "")
                    with self._lock:
                        self.messages.append(kind)
                        self.last[kind] = msg
                        if kind.startswith("Gui") and "props" in msg and "label" in (msg["props"] or {}):
                            self.gui[msg["props"]["label"]] = msg
                    if kind == "BackgroundImageMessage" and msg.get("rgb_data") is not None:
                        self.formats.append(msg["format"])
                        self.frames.put(np.asarray(iio.imread(bytes(msg["rgb_data"]))))
        except ConnectionClosed:
            pass

    def send(self, message: dict) -> None:
        self.ws.send(msgspec.msgpack.encode(message))

    def send_camera(self, cam: BrowserCamera, look_distance: float = 1.0) -> None:
        R = rotation_from_wxyz(cam.wxyz)
        pos = np.asarray(cam.position, dtype=np.float64)
        self.send({
            "type": "ViewerCameraMessage",
            "wxyz": [float(v) for v in cam.wxyz], "position": [float(v) for v in pos], "fov": float(cam.fov),
            "near": 0.01, "far": 1000.0, "image_height": int(cam.height), "image_width": int(cam.width),
            "look_at": [float(v) for v in pos + R[:, 2] * look_distance], "up_direction": [float(v) for v in -R[:, 1]],
        })

    def next_frame(self, timeout_s: float = 30.0) -> np.ndarray:
        """The next frame received (uint8 [H, W, 3]); queue.Empty after ``timeout_s``."""
        return self.frames.get(timeout=timeout_s)

    def uuid_of(self, label: str) -> str:
        with self._lock:
            return self.gui[label]["uuid"]

    def click(self, label: str) -> None:
        """Press the GUI button labelled ``label`` (as the browser does)."""
        self.send({"type": "GuiUpdateMessage", "uuid": self.uuid_of(label), "updates": {"value": True}})

    def set_value(self, label: str, value) -> None:
        self.send({"type": "GuiUpdateMessage", "uuid": self.uuid_of(label), "updates": {"value": value}})

    def close(self) -> None:
        self.ws.close()
        self._thread.join(timeout=5.0)
