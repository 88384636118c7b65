"""Shared fixtures: small generated videos whose frames carry their own index."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from temporalshift.data.encode import write_video
from temporalshift.data.synthetic import numbered_frames

NUM_FRAMES = 60


@pytest.fixture(scope="session")
def numbered_videos(tmp_path_factory) -> dict[str, Path]:
    """The same 60 numbered frames as: mp4 (keyframe every 10), mkv (no frame count in the
    header, one keyframe), variable-frame-rate mp4, and a folder of JPEG frames."""
    root = tmp_path_factory.mktemp("numbered")
    out = {
        "mp4": root / "n.mp4",
        "mkv": root / "n.mkv",
        "vfr": root / "vfr.mp4",
        "frames": root / "frames",
    }
    write_video(out["mp4"], numbered_frames(NUM_FRAMES), fps=25, gop=10)
    write_video(out["mkv"], numbered_frames(NUM_FRAMES), fps=25, gop=NUM_FRAMES)
    steps = np.random.default_rng(0).integers(15, 90, NUM_FRAMES)  # 11 to 67 fps, irregular
    write_video(out["vfr"], numbered_frames(NUM_FRAMES), gop=12, pts=(np.cumsum(steps) - steps[0]).tolist())
    out["frames"].mkdir()
    for i, frame in enumerate(numbered_frames(NUM_FRAMES), start=1):
        Image.fromarray(frame).save(out["frames"] / f"img_{i:05d}.jpg", quality=95)
    return out
