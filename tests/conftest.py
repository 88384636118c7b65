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


TINY_RECIPE = """
model:
  name: tsm_r50_1x1x8_k400
  num_classes: 8
  overrides: {{backbone: resnet18, width: 8, num_segments: 4, input_size: 32, dropout: 0.0}}
data:
  dataset: moving_digits
  root: {root}
  digits_per_class: [{train}, {val}, {test}]
  sampling: 1x1x4
  input_size: 32
  resize_short: null
  scales: [1.0, 0.875]
  flip: 0.0
  test_crops: center
  batch_size: 8
  workers: 0
optim:
  lr: 0.05
  ref_batch_size: 8
  fc_lr_mult: 1.0
  fc_bias_lr_mult: 1.0
schedule:
  epochs: {epochs}
  policy: cosine
runtime:
  work_dir: {work_dir}
  threads: 1
  log_every: 2
  progress: false
  keep_checkpoints: 2
"""


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory):
    """Write a tiny moving-digits recipe; returns a function of (work_dir, epochs, ...) -> YAML path."""
    base = tmp_path_factory.mktemp("recipes")
    data_root = base / "digits"

    def make(work_dir, epochs=2, train=4, val=2, test=2, root=None):
        path = base / f"recipe_{abs(hash((str(work_dir), epochs, train, val, test)))}.yaml"
        text = TINY_RECIPE.format(root=root or (data_root / f"{train}_{val}_{test}"), train=train, val=val,
                                  test=test, epochs=epochs, work_dir=work_dir)  # fmt: skip
        path.write_text(text)
        return path

    return make
