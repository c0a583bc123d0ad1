"""The viewer's settings (``viewer`` in train.py's config; ``python -m nerflite.view`` adds ``run``, ``ckpt``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ViewerConfig:
    enabled: bool = False  # start a browser viewer beside training (`viewer=true`)
    host: str = "127.0.0.1"  # address to bind; 127.0.0.1 keeps it local (reach it over an SSH tunnel)
    port: int = 8080  # HTTP / WebSocket port; the next free one when it is taken
    budget: float = 0.1  # share of wall time the viewer may spend rendering while training runs
    preview_res: int = 64  # longest side in pixels of the frames rendered while the camera moves
    max_res: int = 512  # longest side of the refined frame (at most the training images' own)
    still_s: float = 0.3  # seconds without camera motion before the refined frame is rendered
    refresh_s: float = 10.0  # re-render a still view this often while training (0: never)
    chunk: int = 0  # rays per model forward for viewer frames (0: the run's model.chunk)
    image_format: str = "jpeg"  # jpeg | png (lossless) for the frames sent to the browser
    jpeg_quality: int = 90  # JPEG quality of the frames
    mesh_res: int = 128  # default grid resolution of the mesh button (NeuS)
    play_frames: int = 50  # dynamic scenes: frames per pass of Play through time 0 -> 1

    def __post_init__(self) -> None:
        if not 0.0 < self.budget < 1.0:
            raise ValueError(f"viewer.budget must be in (0, 1), got {self.budget}")
        if self.image_format not in ("jpeg", "png"):
            raise ValueError(f"viewer.image_format must be jpeg or png, got {self.image_format!r}")
        for key in ("preview_res", "max_res", "mesh_res"):
            if getattr(self, key) < 1:
                raise ValueError(f"viewer.{key} must be a positive number of pixels, got {getattr(self, key)}")
        if self.play_frames < 1:
            raise ValueError(f"viewer.play_frames must be >= 1, got {self.play_frames}")


@dataclass
class ViewConfig(ViewerConfig):
    run: str = ""  # run folder to open (outputs/<name>/<date_time>)
    ckpt: str = ""  # checkpoint file (default: the run's latest)
    device: str = "auto"  # auto | cpu | cuda


def expand_shorthand(argv: list[str]) -> list[str]:
    """``viewer=true|false`` on the command line means ``viewer.enabled=...`` (Hydra reads a bare
    ``true`` as a boolean, which cannot select a config node)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"viewer.enabled={value}" if sep and key.lstrip("+~") == "viewer" else arg)
    return out
