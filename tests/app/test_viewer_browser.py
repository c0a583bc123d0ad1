"""The viewer in a real browser: headless Chromium loads the page (served offline by the viewer
itself), connects, and shows the model's rendering behind the scene's frustums."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from websockets.sync.client import connect

from nerflite.engine.trainer import train
from nerflite.view import open_run, serve
from nerflite.viewer.config import ViewConfig

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


class Chromium:
    """Headless Chromium driven over the DevTools protocol (its own WebSocket): open a page, take
    screenshots when the test says so. Stops the browser on ``close``."""

    def __init__(self, profile: Path, size=(1024, 640), timeout_s: float = 60.0):
        cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               "--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = profile / "DevToolsActivePort"
        end = time.monotonic() + timeout_s
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if time.monotonic() > end or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout_s)
        self.next_id = 0

    def call(self, method: str, timeout_s: float = 60.0, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=timeout_s))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(iio.imread(data))[..., :3]

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def refined_frame_shown(viewer) -> bool:
    return any(c.shown is not None and c.shown[1] == "refined" for c in list(viewer.clients.values()))


def upscaled(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize, as a stand-in for the browser stretching the background image."""
    ys = (np.arange(height) * frame.shape[0] / height).astype(int)
    xs = (np.arange(width) * frame.shape[1] / width).astype(int)
    return frame[ys][:, xs]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_headless_chromium_shows_the_rendered_scene(tiny_cfg, tmp_path):
    run = train(tiny_cfg("trainer.steps=300", "trainer.eval_every=0", "trainer.ckpt_every=300")).run_dir
    viewer, model = open_run(ViewConfig(run=str(run), port=0, still_s=0.1, image_format="png"))
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(viewer, model, stop), daemon=True)
    thread.start()
    browser = Chromium(tmp_path / "chrome")
    try:
        browser.call("Page.navigate", url=f"http://127.0.0.1:{viewer.server.get_port()}")
        end = time.monotonic() + 90
        while not refined_frame_shown(viewer) and time.monotonic() < end:
            time.sleep(0.1)
        while True:  # no new frame for 2 s: the page has decoded and drawn the last one
            sent = viewer.frames_sent
            time.sleep(2.0)
            if viewer.frames_sent == sent or time.monotonic() > end:
                break
        frame = viewer.last_frame
        shot = browser.screenshot()
    finally:
        browser.close()
        stop.set()
        thread.join(timeout=10)
    assert frame is not None and viewer.frames_sent >= 2  # the page connected and was sent frames
    assert frame.std() > 5  # the rendered scene has structure: a fair test of "shows the scene"
    h, w = shot.shape[:2]
    iio.imwrite(tmp_path / "screenshot.png", shot)  # kept for a look when this fails
    assert shot.std() > 5  # not blank
    # The background is the stretched frame; GUI panels and frustum lines cover a minority of it,
    # so most pixels match the frame closely (JPEG-free: PNG frames; bilinear vs nearest resize
    # and edges account for the rest), and far better than a uniform image of the frame's mean.
    diff = np.abs(shot.astype(int) - upscaled(frame, h, w).astype(int)).max(-1)
    flat = np.abs(shot.astype(int) - frame.reshape(-1, 3).mean(0).astype(int)).max(-1)
    assert np.median(diff) <= 12, np.median(diff)
    assert np.mean(diff < 16) > 0.6
    assert np.mean(diff < 16) > np.mean(flat < 16) + 0.1
