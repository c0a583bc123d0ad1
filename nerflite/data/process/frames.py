"""Input frames for ``process``: a folder of photos or the frames of a video, sharpest first.

``--frames N`` keeps N views evenly spread over the input: the input is cut into N consecutive
segments and each keeps its sharpest frame (variance of the Laplacian of the grey image, the
usual focus measure: motion blur and defocus flatten edges and lower it), so blurry frames are
dropped without leaving gaps in the capture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from nerflite.data.images import read_image
from nerflite.data.parsers.common import list_images
from nerflite.data.scene import DatasetError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CANDIDATES_PER_FRAME = 3  # video: frames decoded per kept frame (the sharpest of each group is kept)
SHARPNESS_WIDTH = 512  # images are scored at most this wide (the measure compares frames of one input)
DECODED_SHARE = 0.97  # a video that decodes to fewer of the frames its header declares is reported as damaged


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (uint8 [H, W, 3] or [H, W]); higher is sharper."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)
    if gray.shape[1] > SHARPNESS_WIDTH:
        scale = SHARPNESS_WIDTH / gray.shape[1]
        gray = cv2.resize(gray, (SHARPNESS_WIDTH, max(1, round(gray.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F).var())


def segments(n_items: int, n_keep: int) -> list[range]:
    """``n_keep`` consecutive, near-equal index ranges covering ``range(n_items)``."""
    edges = np.linspace(0, n_items, n_keep + 1).round().astype(int)
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def select_sharp(scores: list[float], n_keep: int | None) -> list[int]:
    """Indices of the sharpest item of each of ``n_keep`` segments (all items when n_keep is None
    or not smaller than the count), in input order."""
    if n_keep is None or n_keep >= len(scores):
        return list(range(len(scores)))
    return [max(seg, key=lambda i: scores[i]) for seg in segments(len(scores), n_keep)]


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def folder_images(folder: Path) -> list[Path]:
    """The photos of ``folder`` (natural order); an empty folder is an error."""
    images = list_images(folder)
    if not images:
        raise DatasetError(folder, "no images in the folder (expected .png, .jpg, ...)")
    return images


def other_files(folder: Path) -> list[Path]:
    """Files of ``folder`` that are not images nerflite reads (e.g. ``.heic`` photos, ``.txt`` notes);
    hidden files left out."""
    images = set(list_images(folder))
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p not in images)


def check_photos(photos: list[Path], one_size: bool, workers: int = 4) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Decode every photo, as the inspector does (``nerflite.data.images``): (the good ones, and
    ``(photo, problem)`` for each that is empty, truncated or not an image, or, with ``one_size``
    (one camera for all photos), of another size than most), both in input order."""

    def size(path: Path) -> tuple[int, int] | str:
        try:
            img = read_image(path)
        except DatasetError as e:
            return e.problem
        return img.shape[1], img.shape[0]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV decodes without the GIL
        found = list(pool.map(size, photos))
    sizes = Counter(r for r in found if isinstance(r, tuple))
    common = sizes.most_common(1)[0][0] if sizes else None
    problems: dict[Path, str] = {p: r for p, r in zip(photos, found) if isinstance(r, str)}
    if one_size:
        for p, r in zip(photos, found):
            if isinstance(r, tuple) and r != common:
                problems[p] = (f"is {r[0]}x{r[1]}, most photos {common[0]}x{common[1]}: one camera for all photos "
                               "needs one size (--multi-camera keeps photos of several sizes)")
    return [p for p in photos if p not in problems], [(p, problems[p]) for p in photos if p in problems]


def pick_images(images: list[Path], n_keep: int | None) -> list[Path]:
    """``n_keep`` of the photos, evenly spread, the sharpest of each segment."""
    if n_keep is None or n_keep >= len(images):
        return images
    scores = [sharpness(_read_rgb(p)) for p in images]
    return [images[i] for i in select_sharp(scores, n_keep)]


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(path, "cannot decode the image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _reason(e: Exception, path: Path) -> str:
    """ffmpeg's own last line (``...: Invalid data found when processing input``), path removed."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1].replace(f"{path}: ", "") if lines else type(e).__name__)[:200]


def video_frame_count(path: Path) -> int:
    """Frames in the video (counted by decoding the stream headers with ffmpeg)."""
    import imageio_ffmpeg

    try:
        n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(path, f"cannot read the video ({_reason(e, path)})") from None
    if n <= 0:
        raise DatasetError(path, "the video has no frames")
    return int(n)


def _iter_video(path: Path) -> Iterator[np.ndarray]:
    import imageio.v3 as iio

    try:
        yield from iio.imiter(path, plugin="FFMPEG")
    except (RuntimeError, OSError, ValueError, StopIteration) as e:
        raise DatasetError(path, f"cannot decode the video ({_reason(e, path)})") from None


def declared_frames(path: Path) -> int | None:
    """Frames the video's header declares (duration x frame rate), or None when it does not say."""
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path, plugin="FFMPEG")
        n = float(meta.get("duration") or 0) * float(meta.get("fps") or 0)
    except (RuntimeError, OSError, ValueError, TypeError):
        return None
    return round(n) if np.isfinite(n) and n > 0 else None


def video_frames(path: Path, n_keep: int | None, warn: Callable[[str], None] = print) -> list[tuple[int, np.ndarray]]:
    """(frame index, uint8 [H, W, 3]) of ``n_keep`` frames spread over the video (every frame when
    None): ``CANDIDATES_PER_FRAME`` evenly spaced candidates per kept frame, the sharpest of each
    group kept. One decoding pass holding one frame per group (the sharpest so far). A video that
    decodes to fewer frames than its header declares (damaged data dropped by the decoder) is
    reported through ``warn``."""
    total = video_frame_count(path)
    declared = declared_frames(path)
    if declared is not None and total < DECODED_SHARE * declared:
        warn(f"warning: {path}: decodes to {total} frames, but its header declares {declared}: the file is "
             "damaged (the frames that do not decode are left out)")
    n_cand = total if n_keep is None else min(total, n_keep * CANDIDATES_PER_FRAME)
    wanted = np.linspace(0, total - 1, n_cand).round().astype(int)
    groups = segments(len(wanted), n_cand if n_keep is None else min(n_keep, n_cand))
    group_of = {int(wanted[k]): g for g, seg in enumerate(groups) for k in seg}  # frame index -> group
    best: dict[int, tuple[float, int, np.ndarray]] = {}
    for i, frame in enumerate(_iter_video(path)):
        g = group_of.get(i)
        if g is None:
            continue
        rgb = np.ascontiguousarray(frame[..., :3])
        score = sharpness(rgb)
        if g not in best or score > best[g][0]:
            best[g] = (score, i, rgb)
    if not best:
        raise DatasetError(path, "no frame could be decoded from the video")
    return [(i, rgb) for _, i, rgb in (best[g] for g in sorted(best))]
