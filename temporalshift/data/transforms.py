"""Clip transforms: every frame of a clip gets the same crop, scale and flip.

Clips are uint8 tensors ``(T, 3, H, W)`` until :func:`normalize` turns them into the float
``(T, 3, H, W)`` the models take. Random parameters are drawn once per clip from a
``numpy.random.Generator`` (seeded by the caller), then applied to all frames at once with
torchvision's ``transforms.v2.functional`` ops.

Training: multi-scale crop (TSN/TSM: scales 1, .875, .75, .66, aspect distortion <= 1 step,
13 fixed crop positions) or random resized crop, then resize, random horizontal flip (with an
optional label map for classes that a flip turns into each other, e.g. Something-Something's
"left"/"right"), normalize. Testing: resize by the short side, then center crop, three crops,
ten crops (5 positions and their flips) or the full frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
# test crop modes and the views each gives per clip
CROPS_PER_CLIP: dict[str, int] = {"center": 1, "three": 3, "ten": 10, "full": 1}
TEST_CROPS: tuple[str, ...] = tuple(CROPS_PER_CLIP)


def to_clip(frames: np.ndarray) -> Tensor:
    """Decoded frames ``(T, H, W, 3)`` uint8 -> clip ``(T, 3, H, W)`` uint8 (no copy)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def resize(clip: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize (antialiased when shrinking) of every frame."""
    if clip.shape[-2:] == (height, width):
        return clip
    return TF.resize(clip.contiguous(), [height, width], antialias=True)


def resize_short_side(clip: Tensor, short: int) -> Tensor:
    """Scale so the shorter side is ``short`` pixels, keeping the aspect ratio."""
    h, w = clip.shape[-2:]
    if min(h, w) == short:
        return clip
    if h <= w:
        return resize(clip, short, max(round(w * short / h), 1))
    return resize(clip, max(round(h * short / w), 1), short)


def crop(clip: Tensor, top: int, left: int, height: int, width: int) -> Tensor:
    return clip[..., top : top + height, left : left + width]


def center_crop(clip: Tensor, size: int) -> Tensor:
    h, w = clip.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    return crop(clip, (h - ch) // 2, (w - cw) // 2, ch, cw)


def hflip(clip: Tensor) -> Tensor:
    return clip.flip(-1)


def normalize(clip: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32 ``(x / 255 - mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0
    return (clip.to(torch.float32) - m) / s


def multi_scale_crop_params(
    height: int,
    width: int,
    size: int,
    rng: np.random.Generator,
    scales: Sequence[float] = TSN_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop: ``(top, left, crop_h, crop_w)``.

    Crop sides are ``scale * min(H, W)`` for each scale (snapped to ``size`` within 3 px); height
    and width scales may differ by at most ``max_distort`` steps; the crop sits at one of 5 (or
    13 with ``more_fix_crop``) fixed positions on a 4x4 grid.
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    ch, cw = pairs[int(rng.integers(len(pairs)))]
    hs, ws = (height - ch) // 4, (width - cw) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    gy, gx = grid[int(rng.integers(len(grid)))]
    return gy * hs, gx * ws, ch, cw


def random_resized_crop_params(
    height: int,
    width: int,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """Inception-style crop ``(top, left, h, w)``: random area fraction and log-uniform aspect."""
    total = height * width
    for _ in range(10):
        target = total * rng.uniform(*area)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)  # fall back to a center square
    return (height - side) // 2, (width - side) // 2, side, side


def flip_label_map(class_names: Sequence[str]) -> dict[int, int]:
    """Pairs of classes that a horizontal flip turns into each other ("left" <-> "right").

    >>> flip_label_map(["Pushing something from left to right", "Pushing something from right to left", "Waving"])
    {0: 1, 1: 0}
    """
    index = {name: i for i, name in enumerate(class_names)}
    out: dict[int, int] = {}
    for name, i in index.items():
        swapped = name.replace("left", "\0").replace("right", "left").replace("\0", "right")
        if swapped != name and swapped in index:
            out[i] = index[swapped]
    return out


@dataclass
class TrainTransform:
    """Random training augmentation of one clip; call as ``transform(clip, label, rng)``.

    Args:
        size: output side (square).
        crop: ``"multiscale"`` (TSN/TSM recipe), ``"random_resized"`` or ``"center"``.
        resize_short: rescale the short side first (mmaction2 resizes to 256 before cropping).
        flip: probability of a horizontal flip (0 for Something-Something unless ``flip_labels``).
        flip_labels: label -> label after a flip, for classes a flip changes.
    """

    size: int = 224
    crop: str = "multiscale"
    scales: tuple[float, ...] = TSN_SCALES
    max_distort: int = 1
    resize_short: int | None = 256
    flip: float = 0.5
    flip_labels: Mapping[int, int] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop not in ("multiscale", "random_resized", "center"):
            raise ValueError(f"unknown train crop {self.crop!r}")

    def __call__(self, clip: Tensor, label: int, rng: np.random.Generator) -> tuple[Tensor, int]:
        if self.resize_short:
            clip = resize_short_side(clip, self.resize_short)
        h, w = clip.shape[-2:]
        if self.crop == "multiscale":
            box = multi_scale_crop_params(h, w, self.size, rng, self.scales, self.max_distort)
            clip = resize(crop(clip, *box), self.size, self.size)
        elif self.crop == "random_resized":
            clip = resize(crop(clip, *random_resized_crop_params(h, w, rng)), self.size, self.size)
        else:
            clip = center_crop(resize_short_side(clip, self.size), self.size)
        if self.flip > 0 and rng.random() < self.flip:
            clip = hflip(clip)
            label = self.flip_labels.get(label, label)
        return normalize(clip, self.mean, self.std), label


@dataclass
class TestTransform:
    """Deterministic test views of one clip: ``(views, T, 3, H, W)`` float.

    Args:
        size: crop side (also the short side for ``"full"``).
        resize_short: short side before cropping (256 in the published protocols).
        crops: ``"center"`` (1 view), ``"three"`` (3 along the long side), ``"ten"`` (4 corners
            and center, each also flipped) or ``"full"`` (the whole resized frame).
    """

    __test__ = False  # not a pytest test class, despite its name

    size: int = 224
    resize_short: int | None = 256
    crops: str = "center"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crops not in TEST_CROPS:
            raise ValueError(f"test crops must be one of {TEST_CROPS}, got {self.crops!r}")

    @property
    def num_crops(self) -> int:
        return CROPS_PER_CLIP[self.crops]

    def views(self, clip: Tensor) -> list[Tensor]:
        """The uint8 crops of one clip, in a fixed order."""
        if self.resize_short:
            clip = resize_short_side(clip, self.resize_short)
        if self.crops == "full":
            return [clip if self.resize_short else resize_short_side(clip, self.size)]
        if self.crops == "center":
            return [center_crop(clip, self.size)]
        h, w = clip.shape[-2:]
        s = min(self.size, h, w)
        if self.crops == "three":
            if w >= h:
                return [crop(clip, (h - s) // 2, left, s, s) for left in (0, (w - s) // 2, w - s)]
            return [crop(clip, top, (w - s) // 2, s, s) for top in (0, (h - s) // 2, h - s)]
        corners = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
        five = [crop(clip, t, left, s, s) for t, left in corners]
        return five + [hflip(c) for c in five]

    def __call__(self, clip: Tensor) -> Tensor:
        return normalize(torch.stack(self.views(clip)), self.mean, self.std)
