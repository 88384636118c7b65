"""Built-in temporal dataset: real handwritten digits that move, rotate or grow.

Eight classes in four pairs, each pair the time reversal of the other: moving left / right,
moving up / down, rotating clockwise / anticlockwise, approaching / receding. A clip of one class
played backwards is a clip of its partner, drawn with the same probability. So the *set* of
frames carries no information about which member of a pair a clip belongs to: a model that
ignores frame order (TSN's average over frames) cannot beat about 50%, while one that models
time (TSM) can reach ~100%. That is the paper's central claim, in miniature and offline.

The digits are scikit-learn's bundled copy of the UCI handwritten digits (1,797 8x8 images); the
videos are real H.264 files written with PyAV, with mmaction2-style annotation files, generated
deterministically from a seed.

Also here: videos whose frames carry their own index in a 4x4 binary code, used to check
samplers and decoders end to end.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from temporalshift.atomic import write_text_atomic
from temporalshift.data.encode import write_video

CLASSES: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating anticlockwise",
    "approaching",
    "receding",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class MovingDigitsConfig:
    """Size of the generated dataset (videos per class and split) and of each video."""

    train_per_class: int = 100
    val_per_class: int = 20
    test_per_class: int = 40
    frames: int = 16
    size: int = 64
    fps: float = 8.0
    seed: int = 0

    def __post_init__(self) -> None:
        # An empty split is no use: annotation lists with no videos are refused when read back.
        for split in SPLITS:
            if self.count(split) < 1:
                raise ValueError(
                    f"moving digits need at least 1 video per class in each split, got {split}: {self.count(split)}"
                )

    def count(self, split: str) -> int:
        return getattr(self, f"{split}_per_class")


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]


def _trajectory(label: int, frames: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per-frame (dx, dy, angle, scale) of the even (forward) member of ``label``'s pair."""
    t = np.linspace(-0.5, 0.5, frames)
    cx, cy = rng.uniform(-0.25, 0.25, size=2)
    angle0 = rng.uniform(-0.4, 0.4)
    scale0 = rng.uniform(0.7, 0.9)
    dx, dy = np.full(frames, cx), np.full(frames, cy)
    angle, scale = np.full(frames, angle0), np.full(frames, scale0)
    kind = label // 2
    extent = rng.uniform(0.5, 0.8)
    if kind == 0:  # left (partner: right)
        dx = cx - extent * t
    elif kind == 1:  # up (partner: down)
        dy = cy - extent * t
    elif kind == 2:  # clockwise (partner: anticlockwise)
        angle = angle0 + rng.uniform(1.5, 3.0) * t
    else:  # approaching: grows (partner: receding)
        grow = rng.uniform(0.5, 0.9)
        scale = scale0 * np.exp(grow * 2 * t) * 0.8
    return dx, dy, angle, scale


def render_clip(digit: np.ndarray, label: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of ``digit`` (an 8x8 image in [0, 1]) doing ``label``: uint8 ``(T, size, size, 3)``.

    An odd label is its even partner's clip, drawn from the same random numbers, played backwards.
    """
    if label % 2 == 1:
        return render_clip(digit, label - 1, frames, size, rng)[::-1].copy()
    dx, dy, angle, scale = (torch.tensor(p, dtype=torch.float32) for p in _trajectory(label, frames, rng))
    # Inverse affine map (output -> digit coordinates); the digit fills ~40% of the canvas at scale 1.
    zoom = 1.0 / (0.4 * scale)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [
            torch.stack([cos, -sin, -(cos * dx - sin * dy)], dim=1),
            torch.stack([sin, cos, -(sin * dx + cos * dy)], dim=1),
        ],
        dim=1,
    )
    src = torch.from_numpy(digit)[None, None].expand(frames, 1, 8, 8)
    grid = F.affine_grid(theta, [frames, 1, size, size], align_corners=False)
    ink = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    colour = torch.tensor(rng.uniform(0.6, 1.0, size=3), dtype=torch.float32)
    background = torch.tensor(rng.uniform(0.0, 0.25, size=3), dtype=torch.float32)
    rgb = background + ink[..., None] * (colour - background)
    noise = torch.from_numpy(rng.normal(0, 0.02, size=rgb.shape).astype(np.float32))
    return ((rgb + noise).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _video_name(split: str, label: int, i: int) -> str:
    return f"videos/{split}/{CLASSES[label].replace(' ', '_')}_{i:05d}.mp4"


def make_moving_digits(
    root: str | os.PathLike[str], config: MovingDigitsConfig | None = None, progress: bool = False
) -> dict[str, Path]:
    """Write the dataset under ``root`` (resumable: finished videos are kept) and return paths.

    Returns ``{"train": ..., "val": ..., "test": ..., "classes": ...}``: annotation files in
    mmaction2's video-list format (``videos/train/moving_left_00000.mp4 0``) and the class names.
    Digits for the test split come from a different part of the digit set than training's.
    """
    config = config or MovingDigitsConfig()
    root = Path(root)
    manifest = root / "dataset.json"
    wanted = {"generator": "moving_digits/1", **asdict(config)}
    jobs = [(s, label, i) for s in SPLITS for label in range(len(CLASSES)) for i in range(config.count(s))]
    if manifest.exists():
        _check_manifest(manifest, wanted)
    else:
        _refuse_foreign_files(root, [*_LISTS, *(_video_name(s, label, i) for s, label, i in jobs)])
        root.mkdir(parents=True, exist_ok=True)
        # Claim the folder before the first video, so an interrupted run can be resumed.
        write_text_atomic(manifest, json.dumps(wanted, indent=1))
    digits = _digits()
    cut = int(len(digits) * 0.8)  # held-out handwriting for testing
    pools = {"train": digits[:cut], "val": digits[:cut], "test": digits[cut:]}
    bar = _progress(len(jobs), "generating moving digits") if progress else None
    lists: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, label, i in jobs:
        name = _video_name(split, label, i)
        lists[split].append(f"{name} {label}")
        path = root / name
        if not path.exists():
            rng = np.random.default_rng([config.seed, SPLITS.index(split), label, i])
            pool = pools[split]
            digit = pool[int(rng.integers(len(pool)))]
            clip = render_clip(digit, label, config.frames, config.size, rng)
            # mpeg4: bit-exact from run to run, so the dataset is the same on every machine.
            write_video(path, clip, fps=config.fps, codec="mpeg4", bit_rate=1_000_000)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    out = {}
    for split in SPLITS:
        out[split] = root / f"{split}.txt"
        write_text_atomic(out[split], "\n".join(lists[split]) + "\n")
    out["classes"] = root / "classes.txt"
    write_text_atomic(out["classes"], "\n".join(CLASSES) + "\n")
    return out


_LISTS = ("train.txt", "val.txt", "test.txt", "classes.txt")  # written beside the videos and dataset.json


def _check_manifest(manifest: Path, wanted: dict) -> None:
    """Resume only a dataset this generator made with the same settings: anything else would be mixed up."""
    try:
        found = json.loads(manifest.read_text())
    except ValueError:
        found = None
    if not isinstance(found, dict) or found.get("generator") != wanted["generator"]:
        raise ValueError(f"{manifest} was not written by the moving-digits generator; use another folder")
    if found != wanted:
        raise ValueError(
            f"{manifest.parent} holds a moving-digits dataset made with other settings; use another folder"
        )


def _refuse_foreign_files(root: Path, names: Iterable[str]) -> None:
    """Without a manifest the folder is not ours: never overwrite a file the user put there."""
    if not root.exists():
        return
    for name in names:
        if (root / name).exists():
            raise ValueError(
                f"{root / name} already exists and {root} was not made by the moving-digits generator "
                "(no dataset.json): use an empty or new folder"
            )


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", dynamic_ncols=True, leave=False)


# --- Videos that carry their frame numbers (for testing samplers and decoders) -------------------

_BITS = 16


def numbered_frames(count: int, height: int = 64, width: int = 64) -> Iterator[np.ndarray]:
    """Frames whose index is drawn as a 4x4 grid of black/white blocks (bit b = block b)."""
    if count > 2**_BITS:
        raise ValueError(f"at most {2**_BITS} numbered frames")
    bh, bw = height // 4, width // 4
    for i in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        for b in range(_BITS):
            if i >> b & 1:
                r, c = divmod(b, 4)
                frame[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255
        yield frame


def read_frame_number(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`numbered_frames` (robust to compression and resizing)."""
    h, w = frame.shape[:2]
    bh, bw = h / 4, w / 4
    value = 0
    for b in range(_BITS):
        r, c = divmod(b, 4)
        block = frame[
            math.ceil(r * bh + bh / 4) : math.floor((r + 1) * bh - bh / 4),
            math.ceil(c * bw + bw / 4) : math.floor((c + 1) * bw - bw / 4),
        ]
        if block.mean() > 127:
            value |= 1 << b
    return value
