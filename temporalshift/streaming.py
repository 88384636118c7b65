"""``tsm stream``: frames from a file, a camera or a URL, through an :class:`OnlineRecognizer`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from temporalshift.data.transforms import center_crop, normalize, resize_short_side, to_clip
from temporalshift.online import OnlineRecognizer
from temporalshift.predict import class_names


def read_frames(source: str) -> Iterator[np.ndarray]:
    """RGB frames of a camera index (OpenCV), or of a file or rtsp/http URL (PyAV), in order."""
    if source.isdigit():
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # a missing camera is our one-line error, not its warnings
        import cv2

        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise OSError(f"cannot open camera {source}")
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
    import av

    try:
        container = av.open(source, timeout=10)
    except (av.error.FFmpegError, OSError) as exc:
        raise OSError(f"cannot open {source} ({exc})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{source} has no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def stream(
    model: torch.nn.Module,
    source: str,
    window: int = 8,
    labels: Any = None,
    max_frames: int | None = None,
    engine: str = "auto",
) -> Iterator[dict[str, Any]]:
    """Yield, per frame: its index, the smoothed label and probability, the model latency and the
    engine that ran it (see :class:`~temporalshift.online.OnlineRecognizer`)."""
    recognizer = OnlineRecognizer(model, window, engine=engine)
    spec = model.spec
    names = class_names(labels, spec.num_classes, spec.labels)
    size = spec.input_size
    for i, rgb in enumerate(read_frames(source)):
        if max_frames is not None and i >= max_frames:
            return
        clip = center_crop(resize_short_side(to_clip(rgb[None]), round(size * 256 / 224)), size)
        frame = normalize(clip, spec.mean, spec.std)[0]
        t0 = time.perf_counter()
        recognizer.step(frame)
        latency = (time.perf_counter() - t0) * 1000
        probs = recognizer.smoothed()
        best = int(probs.argmax())
        yield {"frame": i, "label": names[best], "score": float(probs[best]), "latency_ms": latency,
               "engine": recognizer.engine}  # fmt: skip
