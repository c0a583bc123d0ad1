"""Pixel samplers: which (image, y, x) a batch of rays goes through. Pure, vectorized functions.

Every sampler draws from a *pool* of images (all training images, or the current chunk of them),
described by per-image heights and widths [I]. It returns three int64 tensors of the same length:
``img`` (index into the pool), ``y`` (row) and ``x`` (column). All randomness comes from the
``torch.Generator`` passed in, so a batch is a pure function of its generator's seed. No sampler
loops over rays or rejects draws: each is a fixed number of tensor operations.

* ``uniform``: every pixel of the pool equally likely (images weighted by their pixel count).
* ``precrop``: uniform inside the centre crop of each image (``frac`` of its height and width),
  the classic trick for the first steps of a NeRF on object-centred scenes.
* ``patches``: square ``p x p`` patches, rays ordered patch by patch and row-major inside a patch,
  so ``rgb.view(-1, p, p, 3)`` gives the patches back.
* ``masked``: a set fraction of the rays inside the mask and the rest outside it (``fraction=1``
  ignores masked-out pixels altogether), each part uniform over its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def sample_regions(
    n: int, y0: Tensor, x0: Tensor, h: Tensor, w: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform over the union of one rectangle per image: rows ``[y0, y0 + h)``, columns ``[x0, x0 + w)``.

    All arguments are int64 [I]. Returns ``img, y, x`` each int64 [n].
    """
    counts = h * w  # [I]
    ends = torch.cumsum(counts, 0)  # [I]
    total = int(ends[-1])
    if total <= 0:
        raise ValueError("cannot sample from empty regions")
    flat = torch.randint(0, total, (n,), generator=gen)  # [n]
    img = torch.searchsorted(ends, flat, right=True)  # [n]
    sel = lambda t: t.index_select(0, img)  # noqa: E731  (faster than t[img] for small tables)
    r = flat - sel(ends - counts)  # [n] offset inside the rectangle
    wi = sel(w)
    return img, sel(y0) + r // wi, sel(x0) + r % wi


def sample_uniform(
    n: int, heights: Tensor, widths: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Every pixel of the pool equally likely."""
    zero = torch.zeros_like(heights)
    return sample_regions(n, zero, zero, heights, widths, gen)


def crop_box(
    heights: Tensor, widths: Tensor, frac: float, min_size: int = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The centred box covering ``frac`` of each image's height and width (at least ``min_size``
    pixels, at most the image): ``y0, x0, h, w`` [I]."""
    h = (heights.double() * frac).round().long().clamp(min=min_size).minimum(heights)
    w = (widths.double() * frac).round().long().clamp(min=min_size).minimum(widths)
    return (heights - h) // 2, (widths - w) // 2, h, w


def sample_precrop(
    n: int, heights: Tensor, widths: Tensor, frac: float, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform inside each image's centre crop (``frac`` of height and width)."""
    return sample_regions(n, *crop_box(heights, widths, frac), gen)


def sample_patches(
    n_patches: int,
    size: int,
    heights: Tensor,
    widths: Tensor,
    gen: torch.Generator,
    crop_frac: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``n_patches`` square ``size x size`` patches, uniform over valid top-left corners.

    With ``crop_frac`` the patches lie inside the centre crop. Returns [n_patches * size * size],
    ordered patch by patch, row-major inside each patch.
    """
    y0, x0, h, w = crop_box(heights, widths, 1.0 if crop_frac is None else crop_frac, min_size=size)
    if bool((h < size).any() or (w < size).any()):
        raise ValueError(f"patch size {size} is larger than an image of the pool")
    img, ty, tx = sample_regions(n_patches, y0, x0, h - size + 1, w - size + 1, gen)  # [p] top-left corners
    d = torch.arange(size)
    dy = d.view(1, size, 1).expand(1, size, size)  # [1, size, size]
    dx = d.view(1, 1, size).expand(1, size, size)
    y = (ty.view(-1, 1, 1) + dy).reshape(-1)  # [p * size * size]
    x = (tx.view(-1, 1, 1) + dx).reshape(-1)
    img = img.view(-1, 1, 1).expand(-1, size, size).reshape(-1)
    return img, y, x


def inside_indices(masks: Tensor) -> Tensor:
    """Sorted flat indices [k] of the true entries of a flat bool mask [t] (the pool's masks concatenated)."""
    idx = torch.nonzero(masks, as_tuple=False).view(-1)
    return idx.to(torch.int32) if masks.numel() < 2**31 else idx


def sample_masked(
    n: int,
    inside: Tensor,
    heights: Tensor,
    widths: Tensor,
    fraction: float,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """``round(fraction * n)`` rays uniform over the pixels inside the mask, the rest uniform outside it.

    ``inside`` [k] are the sorted flat indices of the inside pixels over the pool (images
    concatenated in pool order, row-major), from ``inside_indices``. The outside pixels are never
    listed: the j-th outside pixel is ``j + #{i : inside[i] - i <= j}`` (``inside[i] - i`` counts
    the outside pixels before ``inside[i]``), one ``searchsorted``. When one side is empty, all rays
    come from the other. Rays inside come first.
    """
    sizes = heights * widths  # [I]
    ends = torch.cumsum(sizes, 0)
    total, k = int(ends[-1]), int(inside.numel())
    n_in = int(round(fraction * n))
    if k == 0:
        n_in = 0
    elif k == total:
        n_in = n
    parts = []
    if n_in > 0:
        parts.append(inside[torch.randint(0, k, (n_in,), generator=gen)].long())
    if n - n_in > 0:
        j = torch.randint(0, total - k, (n - n_in,), generator=gen)  # [n_out] rank among outside pixels
        before = inside.long() - torch.arange(k)  # [k] outside pixels before each inside one
        parts.append(j + torch.searchsorted(before, j, right=True))
    flat = torch.cat(parts)  # [n]
    img = torch.searchsorted(ends, flat, right=True)
    r = flat - (ends - sizes).index_select(0, img)
    wi = widths.index_select(0, img)
    return img, r // wi, r % wi


def all_pixels(height: int, width: int) -> tuple[Tensor, Tensor]:
    """Row-major ``y, x`` [height * width] of every pixel of one image."""
    y = torch.arange(height).view(-1, 1).expand(height, width).reshape(-1)
    x = torch.arange(width).view(1, -1).expand(height, width).reshape(-1)
    return y, x


@dataclass
class PixelSampler:
    """Chooses the sampler for a step from the datamanager's settings (see ``DataManagerConfig``)."""

    kind: str = "uniform"  # "uniform" | "patch"
    patch_size: int = 32
    mask_sampling: str = "none"  # "none" | "fraction" | "inside"
    mask_fraction: float = 0.5
    precrop_steps: int = 0
    precrop_frac: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "patch"):
            raise ValueError(f"unknown sampler {self.kind!r} (uniform | patch)")
        if self.mask_sampling not in ("none", "fraction", "inside"):
            raise ValueError(f"unknown mask_sampling {self.mask_sampling!r} (none | fraction | inside)")
        if self.kind == "patch" and self.mask_sampling != "none":
            raise ValueError("mask-aware sampling draws single pixels: use it with sampler=uniform")
        if not 0.0 <= self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in [0, 1], got {self.mask_fraction}")

    @property
    def uses_masks(self) -> bool:
        return self.mask_sampling != "none"

    def rays_per_batch(self, n: int) -> int:
        """Rays a batch really holds: whole patches only."""
        if self.kind == "patch":
            if n < self.patch_size**2:
                raise ValueError(f"rays_per_batch {n} is smaller than one {self.patch_size}^2 patch")
            return (n // self.patch_size**2) * self.patch_size**2
        return n

    def __call__(
        self,
        n: int,
        step: int,
        heights: Tensor,
        widths: Tensor,
        gen: torch.Generator,
        inside: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``img, y, x`` [n] for batch ``step`` from a pool of images sized ``heights, widths`` [I].

        ``inside`` (from ``inside_indices``) is needed when mask sampling is on; precrop applies to the
        uniform and patch samplers for ``step < precrop_steps``.
        """
        crop = self.precrop_frac if step < self.precrop_steps else None
        if self.uses_masks:
            if inside is None:
                raise ValueError("mask-aware sampling needs the pool's masks")
            fraction = 1.0 if self.mask_sampling == "inside" else self.mask_fraction
            return sample_masked(n, inside, heights, widths, fraction, gen)
        if self.kind == "patch":
            return sample_patches(n // self.patch_size**2, self.patch_size, heights, widths, gen, crop)
        if crop is not None:
            return sample_precrop(n, heights, widths, crop, gen)
        return sample_uniform(n, heights, widths, gen)
