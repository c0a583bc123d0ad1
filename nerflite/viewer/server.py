"""The browser side: a viser server showing a scene's training cameras, the model's rendering of
each browser's camera, training status, pause / resume, (NeuS) mesh extraction and, for a scene
that moves, a time slider with Play (``timeline.py``).

Threads: viser answers the browsers in its own threads, whose callbacks only record what was
asked (a camera, an output, a button) under a lock. All rendering happens in the caller's thread,
in ``after_step`` (between training steps, within the time budget) and ``idle`` (training paused,
or a finished run), so it never runs during a step. With no browser connected, ``after_step``
returns at once.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from nerflite.data.scene import Scene
from nerflite.engine.evaluate import sdf_mesh
from nerflite.models.base import Model, resolve_chunk
from nerflite.viewer.config import ViewerConfig
from nerflite.viewer.frames import (
    OUTPUTS,
    BrowserCamera,
    Budget,
    FrameJob,
    eval_mode,
    output_keys,
    picture,
    wxyz_from_rotation,
)
from nerflite.viewer.timeline import Timeline

PREVIEW, REFINED = "preview", "refined"  # the two levels of a frame


@dataclass
class _Client:
    """What one browser asked for and was last shown (written by viser's threads under the lock)."""

    handle: object  # viser.ClientHandle
    camera: BrowserCamera
    version: int = 0  # bumped by every camera move or output change
    moved_at: float = field(default_factory=time.perf_counter)
    job: FrameJob | None = None
    shown: tuple | None = None  # (version, level) of the last frame sent
    shown_at: float = 0.0
    shown_step: int = -1


def _camera_of(handle) -> BrowserCamera:
    cam = handle.camera
    return BrowserCamera(
        tuple(float(v) for v in cam.wxyz), tuple(float(v) for v in cam.position), float(cam.fov),
        int(cam.image_width), int(cam.image_height),
    )


class Viewer:
    """A live viewer of ``scene`` and a model; see the module docstring. Use ``start_viewer``."""

    def __init__(self, server, cfg: ViewerConfig, scene: Scene, model: Model, chunk: int,
                 total_steps: int | None, status: str = ""):
        self.server, self.cfg, self.scene = server, cfg, scene
        self.chunk = resolve_chunk(model, cfg.chunk if cfg.chunk > 0 else chunk)  # 0: sized for the device
        self.total_steps = total_steps  # None: a finished run (no training, nothing to pause)
        self.keys = output_keys(model, scene)
        train = scene.cameras[scene.split("train")]
        train_longest = int(max(train.width.max(), train.height.max()))
        self.refined_res = max(1, min(cfg.max_res, train_longest))
        self.preview_res = max(1, min(cfg.preview_res, self.refined_res))
        self.budget = Budget(cfg.budget)
        self.lock = threading.Lock()
        self.clients: dict[int, _Client] = {}
        self.output = "rgb"
        self.step, self.scalars, self.status = 0, {}, status
        self.frames_sent = 0
        self.last_frame: np.ndarray | None = None  # the last picture sent (uint8 [h, w, 3])
        self._paused = threading.Event()
        self._mesh_request: int | None = None
        self._status_at = 0.0
        self.timeline: Timeline | None = None  # dynamic scenes: the moment shown, Play
        self._setup_scene(train)
        self._setup_gui(model)
        server.on_client_connect(self._connect)
        server.on_client_disconnect(self._disconnect)

    # ------------------------------------------------------------------ set-up (once)
    def _setup_scene(self, train) -> None:
        c2w = train.c2w.double().numpy()  # [n, 3, 4]
        up = -c2w[:, :, 1].mean(0)  # OpenCV's -y is the cameras' up
        up = up / max(np.linalg.norm(up), 1e-9)
        center = self.scene.sphere_center.double().numpy()
        dist = np.linalg.norm(c2w[:, :, 3] - center, axis=-1)
        self.distances = (float(dist.min()), float(dist.max())) if len(dist) else None
        scale = 0.04 * float(np.median(dist)) if len(dist) else 0.1
        fov = [2.0 * math.atan(float(h) / (2.0 * float(fy))) for h, fy in zip(train.height, train.fy)]
        aspect = [float(w) / float(h) for w, h in zip(train.width, train.height)]
        self.server.scene.set_up_direction(tuple(float(v) for v in up))
        init = self.server.initial_camera
        back = center + 1.4 * (c2w[0, :, 3] - center) + 0.25 * float(dist[0]) * up  # behind and above view 0
        init.position = tuple(float(v) for v in back)
        init.look_at = tuple(float(v) for v in center)
        init.up = tuple(float(v) for v in up)
        init.fov = fov[0]
        times = self.scene.times[self.scene.split("train")].tolist() if self.scene.is_dynamic else None
        for i in range(len(c2w)):
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i:04d}", fov=fov[i], aspect=aspect[i], scale=scale, color=(230, 120, 40),
                wxyz=wxyz_from_rotation(c2w[i, :, :3]), position=tuple(float(v) for v in c2w[i, :, 3]),
            )
            frustum.on_click(self._jump_to(c2w[i], fov[i], float(dist[i]), None if times is None else times[i]))

    def _jump_to(self, c2w: np.ndarray, fov: float, dist: float, moment: float | None):
        def jump(event) -> None:  # viser thread: move that browser's camera onto the training view
            cam = event.client.camera
            with event.client.atomic():
                cam.fov = fov
                cam.position = tuple(float(v) for v in c2w[:, 3])
                cam.look_at = tuple(float(v) for v in c2w[:, 3] + c2w[:, 2] * max(dist, 1e-3))
                cam.up_direction = tuple(float(v) for v in -c2w[:, 1])
            if moment is not None and self.timeline is not None:
                self.timeline.jump(moment)  # and to its moment

        return jump

    def _setup_gui(self, model: Model) -> None:
        gui = self.server.gui
        gui.configure_theme(show_share_button=False)
        self.status_md = gui.add_markdown(self.status or "starting")
        if self.scene.is_dynamic:
            self.timeline = Timeline(gui, self.cfg.play_frames, self._time_changed)
        options = [k for k in OUTPUTS if k in self.keys]
        dropdown = gui.add_dropdown("Output", options=tuple(options), initial_value="rgb")

        @dropdown.on_update
        def _(_event) -> None:
            with self.lock:
                self.output = str(dropdown.value)
                for c in self.clients.values():
                    c.version += 1

        if self.total_steps is not None:
            button = gui.add_button("Pause training")

            @button.on_click
            def _(_event) -> None:
                if self._paused.is_set():
                    self._paused.clear()
                    button.label = "Pause training"
                else:
                    self._paused.set()
                    button.label = "Resume training"

        if hasattr(model, "scene_sdf"):
            res = gui.add_slider("Mesh resolution", min=32, max=512, step=32, initial_value=self.cfg.mesh_res)
            mesh_button = gui.add_button("Extract mesh")

            @mesh_button.on_click
            def _(_event) -> None:
                with self.lock:
                    self._mesh_request = int(res.value)

    def _connect(self, handle) -> None:
        client = _Client(handle, _camera_of(handle))

        @handle.camera.on_update
        async def _(_cam) -> None:  # runs in viser's event loop: just record it
            with self.lock:
                client.camera = _camera_of(handle)
                client.version += 1
                client.moved_at = time.perf_counter()

        with self.lock:
            self.clients[handle.client_id] = client

    def _disconnect(self, handle) -> None:
        with self.lock:
            self.clients.pop(handle.client_id, None)

    def _time_changed(self, _t: float, moved: bool) -> None:
        """Every browser needs a frame at the new moment; a slider dragged counts as a camera move
        (quick frames first), Play's own steps do not (a still camera gets refined frames)."""
        with self.lock:
            for c in self.clients.values():
                c.version += 1
                if moved:
                    c.moved_at = time.perf_counter()

    # ------------------------------------------------------------------ the caller's thread
    def after_step(self, step: int, model: Model, scalars: dict) -> None:
        """After a training step: note the status; render within the budget if a browser is there."""
        self.step = step
        self.scalars.update(scalars)
        if not self.clients:
            return
        self.budget.earn()
        self._work(model, limited=True)

    def paused(self) -> bool:
        return self._paused.is_set()

    def idle(self, step: int, model: Model) -> None:
        """Between steps while paused (or for a finished run): render without a budget, or nap."""
        self.step = step
        if not self._work(model, limited=False):
            time.sleep(0.02)

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()

    def _work(self, model: Model, limited: bool) -> bool:
        """Mesh requests, status, then frame chunks while the budget lasts; whether anything ran."""
        did = self._mesh(model)
        self._update_status()
        job = self._next_job()
        if job is None:
            return did
        until = time.perf_counter() + 0.1  # unlimited: still come back often to see pause / resume
        with eval_mode(model):
            while job is not None and (self.budget.available() if limited else time.perf_counter() < until):
                t0 = time.perf_counter()
                job.step(model)
                if job.finished:
                    self._send(job, model)
                if limited:
                    self.budget.spend(time.perf_counter() - t0)
                job = self._next_job()
        return True

    def _next_job(self, played: bool = False) -> FrameJob | None:
        """The unfinished frame of the next browser that needs one, taking turns after each frame
        sent so that one busy browser does not starve the others (new frames made as needed).
        While Play is on and every browser has its frame of the current moment, the next moment."""
        now = time.perf_counter()
        with self.lock:
            clients, output = list(self.clients.values()), self.output
        if clients:
            turn = self.frames_sent % len(clients)
            clients = clients[turn:] + clients[:turn]
        for c in clients:
            with self.lock:  # the moment after the version: a new moment is set before versions move on
                version, camera, moved_at = c.version, c.camera, c.moved_at
                moment = self.timeline.time if self.timeline is not None else None
            if c.job is not None and c.job.tag[0] != version:
                c.job = None  # the camera moved on: that frame is stale
            if c.job is None:
                level = self._level(c, version, now - moved_at, now)
                if level is None or camera.width <= 0 or camera.height <= 0:
                    continue
                res = self.preview_res if level == PREVIEW else self.refined_res
                tag = (version, level, output, c)
                c.job = FrameJob.of_camera(self.scene, camera, res, self.chunk, self.keys, tag, self.distances,
                                           moment)
            return c.job
        if clients and not played and self.timeline is not None and self.timeline.playing:
            self.timeline.advance()
            return self._next_job(played=True)
        return None

    def _level(self, c: _Client, version: int, still_s: float, now: float) -> str | None:
        if c.shown is None or c.shown[0] != version:  # moved: a quick frame first (playing: unless still)
            playing_still = self.timeline is not None and self.timeline.playing and still_s >= self.cfg.still_s
            return PREVIEW if self.preview_res < self.refined_res and not playing_still else REFINED
        if c.shown[1] == PREVIEW:
            return REFINED if still_s >= self.cfg.still_s else None
        stale = self.total_steps is not None and self.step > c.shown_step
        if stale and self.cfg.refresh_s > 0 and now - c.shown_at >= self.cfg.refresh_s:
            return REFINED  # the model has trained on: show it again
        return None

    def _send(self, job: FrameJob, model: Model) -> None:
        version, level, output, c = job.tag
        pic = picture(job.outputs(), output)
        fmt = "png" if self.cfg.image_format == "png" else "jpeg"
        c.handle.scene.set_background_image(pic, format=fmt, jpeg_quality=self.cfg.jpeg_quality)
        c.job, c.shown, c.shown_at, c.shown_step = None, (version, level), time.perf_counter(), self.step
        self.frames_sent += 1
        self.last_frame = pic

    def _mesh(self, model: Model) -> bool:
        with self.lock:
            res, self._mesh_request = self._mesh_request, None
        if res is None:
            return False
        t0 = time.perf_counter()
        with eval_mode(model):
            mesh = sdf_mesh(model, res, colors=True)
        if len(mesh.faces) == 0:
            self.status = f"mesh at {res}^3: no surface found yet"
            return True
        import trimesh

        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=mesh.colors, process=False)
        self.server.scene.add_mesh_trimesh("/mesh", tm)
        self.status = f"mesh at {res}^3: {len(mesh.vertices)} vertices ({time.perf_counter() - t0:.1f} s)"
        return True

    def _update_status(self) -> None:
        now = time.perf_counter()
        if now - self._status_at < 0.5:
            return
        self._status_at = now
        s = self.scalars
        if self.total_steps is None:
            line = f"**finished run** at step {self.step}"
        else:
            line = f"**step {self.step} / {self.total_steps}**" + (" (paused)" if self.paused() else "")
            if "train/loss" in s:
                line += f"  \nloss {s['train/loss']:.4g}"
            if "train/psnr" in s:
                line += f" · PSNR {s['train/psnr']:.2f} dB"
            if "perf/rays_per_s" in s:
                line += f" · {s['perf/rays_per_s'] / 1000:.1f}k rays/s"
            line += f"  \nviewer: {100 * self.budget.share_used():.1f}% of wall time"
        if self.status:
            line += f"  \n{self.status}"
        self.status_md.content = line
