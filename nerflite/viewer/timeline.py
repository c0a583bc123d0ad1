"""The viewer's clock for scenes that move: a **Time** slider (0..1) and a **Play** checkbox.

Made only for a dynamic scene (``scene.is_dynamic``); the viewer renders each frame's rays at the
slider's moment (``extras["time"]``, as render.py's ``time=T``), so static scenes keep rays without
time and a GUI without the two controls. While Play is ticked, each frame sent at the current
moment moves the clock on by ``1 / play_frames`` (from 1 back to 0), so playing shows evenly spaced
moments however fast frames are rendered: a film, not a wall clock.

The slider's callback runs in viser's threads (a browser drags it) and in the caller's (the
server assigns it); ``on_time(t, moved)`` tells the viewer, ``moved`` false for Play's own steps.
"""

from __future__ import annotations

from collections.abc import Callable


class Timeline:
    """The Time slider and the Play checkbox of one viewer; ``time`` is the moment shown."""

    def __init__(self, gui, play_frames: int, on_time: Callable[[float, bool], None], time: float = 0.0):
        self.time = float(time)
        self.playing = False
        self.play_step = 1.0 / max(int(play_frames), 1)
        self.on_time = on_time
        self.slider = gui.add_slider("Time", min=0.0, max=1.0, step=0.001, initial_value=self.time)
        self.play = gui.add_checkbox("Play", initial_value=False)

        @self.slider.on_update
        def _(_event) -> None:
            t = min(max(float(self.slider.value), 0.0), 1.0)
            if t != self.time:  # Play's own steps are already known
                self.time = t
                on_time(t, True)

        @self.play.on_update
        def _(_event) -> None:
            self.playing = bool(self.play.value)

    def next_moment(self) -> float:
        """The moment after ``time`` while playing: one ``play_step`` on, after 1 back to 0."""
        t = self.time + self.play_step
        return 0.0 if t > 1.0 + 1e-9 else round(min(t, 1.0), 9)

    def advance(self) -> None:
        """Play's step (the caller's thread): the next moment, shown on every browser's slider."""
        self.time = self.next_moment()
        self.on_time(self.time, False)
        self.slider.value = self.time

    def jump(self, t: float) -> None:
        """Set the slider as a browser would (a frustum click: that training view's moment)."""
        self.slider.value = float(t)
