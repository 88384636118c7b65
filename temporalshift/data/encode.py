"""Writing videos with PyAV: generated datasets, resized copies and repaired files.

Every file is written to a temporary name beside its destination and renamed into place, so an
interrupted run never leaves a half-written video that a later run would take as finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from temporalshift.atomic import atomic_path


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float = 30.0,
    codec: str = "libx264",
    crf: int = 18,
    bit_rate: int | None = None,
    gop: int | None = None,
    pts: Iterable[int] | None = None,
    time_base: Fraction | None = None,
) -> int:
    """Encode uint8 RGB frames ``(H, W, 3)`` to ``path`` atomically (odd sides padded to even for
    4:2:0 chroma); returns the frame count.

    Args:
        fps: nominal frame rate.
        codec: an FFmpeg encoder PyAV ships (``libx264``, ``mpeg4``, ``libvpx-vp9``...).
        crf: quality for x264 (lower is better; 18 is visually lossless).
        bit_rate: target bits per second for the other encoders. FFmpeg's own ``mpeg4`` encoder
            is bit-exact from run to run, which x264 (in-process, via PyAV) was not always here.
        gop: keyframe interval in frames (``None``: the encoder's default).
        pts: explicit presentation times in ``time_base`` units, for variable frame rate.
        time_base: the stream time base when ``pts`` are given (default 1/1000 s).

    >>> import numpy as np
    >>> write_video("gray.mp4", [np.full((32, 32, 3), 128, np.uint8)] * 4)   # doctest: +SKIP
    4
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    pts_iter = iter(pts) if pts is not None else None
    count = 0
    with atomic_path(path) as tmp:
        fmt = {".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".mp4": "mp4"}.get(Path(path).suffix)
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream(codec, rate=rate)
                    # 4:2:0 chroma needs even sides: an odd one gains a copy of the last row/column
                    stream.height, stream.width = (side + side % 2 for side in frame.shape[:2])
                    stream.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        stream.options = {"crf": str(crf)}
                    elif bit_rate:
                        stream.bit_rate = bit_rate
                    if gop is not None:
                        stream.codec_context.gop_size = gop
                        if codec == "libx264":
                            stream.options = {**stream.options, "keyint": str(gop), "min-keyint": str(gop)}
                    if pts_iter is not None:
                        # The muxer picks the stream's own time base; the encoder takes ours.
                        stream.codec_context.time_base = time_base or Fraction(1, 1000)
                if frame.shape[:2] != (stream.height, stream.width):  # odd sides padded (see below)
                    frame = np.pad(frame, ((0, stream.height - frame.shape[0]), (0, stream.width - frame.shape[1]),
                                           (0, 0)), mode="edge")  # fmt: skip
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                if pts_iter is not None:
                    vf.pts = next(pts_iter)
                    vf.time_base = stream.codec_context.time_base
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
    return count
