"""Which frames of a video make a clip: pure functions of (num_frames, spec, rng) -> indices.

Two families, as in the published model zoos:

* **segment** (TSN/TSM, ``"AxBxN"``, e.g. ``"1x1x8"``): the video is cut into N equal segments;
  each gives a snippet of A frames B apart. Training takes a random offset in each segment,
  testing the segment centres; ``twice_sample`` adds a second view from the segment starts (the
  authors' "twice sample"); ``test_clips`` > 1 spreads more views evenly inside the segments.
* **dense** (I3D-style, the authors' ``--dense_sample``): N frames with a stride inside a window of
  ``window`` frames (64 by default, stride = window // N); training picks a random window start,
  testing spreads ``test_clips`` windows (10 in the published protocol) evenly over the video.

Indices past the end wrap around (mmaction2's "loop"), and a video shorter than the clip repeats
frames in time order, so every clip has exactly ``N*A`` frames. Dense sampling takes no twice-sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SAMPLING_MODES: tuple[str, ...] = ("segment", "dense")


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample a clip. ``frames_per_clip = num_segments * clip_len``."""

    mode: str = "segment"
    num_segments: int = 8
    clip_len: int = 1
    frame_interval: int = 1
    test_clips: int = 1
    twice_sample: bool = False
    window: int = 64

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {self.mode!r}")
        for name in ("num_segments", "clip_len", "frame_interval", "test_clips", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampling {name} must be >= 1, got {getattr(self, name)}")
        if self.mode == "dense" and self.twice_sample:  # its second view comes from segment starts
            raise ValueError("twice_sample takes a second view from the segment starts; dense sampling has no segments")

    @property
    def frames_per_clip(self) -> int:
        return self.num_segments * self.clip_len

    @property
    def test_views(self) -> int:
        """Clips per video at test time (twice-sample doubles them)."""
        return self.test_clips * (2 if self.twice_sample else 1)

    @classmethod
    def parse(cls, text: str, **kw: object) -> SamplingSpec:
        """``"1x1x8"`` -> segments; ``"dense"`` / ``"dense-1x1x8"`` -> dense sampling.

        >>> SamplingSpec.parse("1x1x16").num_segments
        16
        >>> SamplingSpec.parse("dense-1x1x8", test_clips=10).mode
        'dense'
        """
        mode = "segment"
        body = text.strip().lower()
        if body.startswith("dense"):
            mode, body = "dense", body[len("dense") :].lstrip("-_") or "1x1x8"
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", body)
        if not m:
            raise ValueError(f"cannot read sampling {text!r}; expected e.g. '1x1x8' or 'dense-1x1x8'")
        clip_len, interval, segments = (int(g) for g in m.groups())
        return cls(mode=mode, num_segments=segments, clip_len=clip_len, frame_interval=interval, **kw)


def _snippets(starts: np.ndarray, spec: SamplingSpec, num_frames: int) -> np.ndarray:
    """Expand snippet starts to their ``clip_len`` frames, wrapping past the end."""
    offsets = np.arange(spec.clip_len) * spec.frame_interval
    return ((starts[..., None] + offsets).reshape(*starts.shape[:-1], -1) % num_frames).astype(np.int64)


def _short_video(num_frames: int, count: int) -> np.ndarray:
    """A video with fewer frames than a clip needs: repeat frames, keeping time order."""
    return np.floor(np.arange(count) * num_frames / count).astype(np.int64)


def _segment_starts(num_frames: int, spec: SamplingSpec, fractions: np.ndarray) -> np.ndarray:
    """Snippet starts at ``fractions`` (0..1) into each of the N segments.

    ``fractions`` is ``(views, 1)`` (the same place in every segment) or ``(1, N)`` (one random
    place per segment); the result is ``(views, N)``.
    """
    span = spec.clip_len * spec.frame_interval
    usable = max(num_frames - span + 1, 1)  # shorter than one snippet: every start at 0 (then wrapped)
    seg = usable / spec.num_segments
    base = np.arange(spec.num_segments) * seg
    return (base[None, :] + fractions * seg).astype(np.int64)


def _dense_geometry(num_frames: int, spec: SamplingSpec) -> tuple[int, int]:
    """Dense sampling: the stride inside the window, and the last start that keeps it in the video."""
    return max(spec.window // spec.num_segments, 1), max(num_frames - spec.window, 0)


def sample_train(num_frames: int, spec: SamplingSpec, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one training clip, shape ``(frames_per_clip,)``.

    >>> sample_train(80, SamplingSpec(num_segments=8), np.random.default_rng(0)).tolist()
    [6, 12, 20, 30, 48, 59, 66, 77]
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    n = spec.num_segments
    if spec.mode == "dense":
        stride, last_start = _dense_geometry(num_frames, spec)
        start = int(rng.integers(0, last_start + 1))
        return _snippets(start + np.arange(n) * stride, spec, num_frames)
    span = spec.clip_len * spec.frame_interval
    if num_frames - span + 1 < n:
        if spec.clip_len == 1:
            return _short_video(num_frames, n)
        return _snippets(_short_video(max(num_frames - span + 1, 1), n), spec, num_frames)
    return _snippets(_segment_starts(num_frames, spec, rng.random((1, n)))[0], spec, num_frames)


def sample_test(num_frames: int, spec: SamplingSpec) -> np.ndarray:
    """Frame indices of every test view, shape ``(test_views, frames_per_clip)``; deterministic.

    >>> sample_test(80, SamplingSpec(num_segments=4)).tolist()
    [[10, 30, 50, 70]]
    >>> sample_test(80, SamplingSpec(num_segments=4, twice_sample=True)).tolist()
    [[10, 30, 50, 70], [0, 20, 40, 60]]
    >>> sample_test(5, SamplingSpec(num_segments=8, twice_sample=True)).tolist()
    [[0, 0, 1, 2, 2, 3, 4, 4], [0, 0, 1, 1, 2, 3, 3, 4]]
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    n = spec.num_segments
    if spec.mode == "dense":
        stride, last_start = _dense_geometry(num_frames, spec)
        starts = np.linspace(0, last_start, num=spec.test_clips).astype(np.int64)
        return _snippets(starts[:, None] + np.arange(n)[None, :] * stride, spec, num_frames)
    # The same centres (and starts) for a video shorter than N segments: frames repeat in time
    # order, as the authors' int(tick / 2 + tick * x) with tick < 1 has them.
    fractions = (np.arange(spec.test_clips) + 0.5) / spec.test_clips
    if spec.twice_sample:
        fractions = np.concatenate([fractions, fractions - 0.5 / spec.test_clips])
    return _snippets(_segment_starts(num_frames, spec, fractions[:, None]), spec, num_frames)
