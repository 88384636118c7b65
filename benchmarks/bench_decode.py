"""Train-pipeline throughput: PyAV with keyframe-aware seeking vs decoding every frame.

One clip = decode 8 sparse frames (TSN segments, random offsets) + multi-scale crop + flip +
normalize (the TSM training recipe at 224x224), on generated 320x240 H.264 videos of 10 s and
60 s, each with a keyframe every second (typical of phone and web video) and with x264's default
of one every 250 frames. OpenCV and decord run the same clips for reference. All figures come
from one run, on the same files and the same clips; ratios are against decoding every frame.

    python benchmarks/bench_decode.py [--clips 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from temporalshift.bench import make_bench_video
from temporalshift.data.decode import DecordReader, OpenCVReader, PyAVReader
from temporalshift.data.sampling import SamplingSpec, sample_train
from temporalshift.data.transforms import TrainTransform, to_clip


def make_video(path: Path, seconds: int, gop: int | None, fps: int = 30) -> Path:
    """A 320x240 video with moving content (so inter frames carry real motion)."""
    return make_bench_video(path, seconds, gop, fps)


def clips_per_second(open_reader, path: Path, clips: int, seed: int = 0) -> float:
    spec, transform = SamplingSpec(num_segments=8), TrainTransform()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(clips):
        with open_reader(path) as reader:  # a fresh open per clip, as a dataset does
            frames = reader.get_frames(sample_train(len(reader), spec, rng).tolist())
        transform(to_clip(frames), 0, rng)
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30, help="clips per measurement")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "tsm-bench-videos"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one data-loading worker's view
    cache = Path(args.cache)
    readers = {
        "pyav-seek": lambda p: PyAVReader(p, seek=True),
        "pyav-decode-all": lambda p: PyAVReader(p, seek=False),
        "opencv": OpenCVReader,
        "decord": DecordReader,
    }
    rows = []
    for seconds in (10, 60):
        for gop, gop_name in ((30, "1 s"), (None, "250 frames")):
            video = make_video(cache / f"v{seconds}s_gop{gop or 250}.mp4", seconds, gop)
            row = {"video": f"{seconds} s, keyframe every {gop_name}"}
            for name, make in readers.items():
                try:
                    row[name] = clips_per_second(make, video, args.clips)
                except Exception as exc:  # noqa: BLE001 - an optional backend may be missing
                    row[name] = None
                    print(f"{name}: {exc}")
            row["seek/decode-all"] = row["pyav-seek"] / row["pyav-decode-all"]
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    names = list(readers) + ["seek/decode-all"]
    print(f"{'clips/s (1 thread)':34}" + "".join(f"{n:>17}" for n in names))
    for row in rows:
        cells = "".join(f"{row[n]:17.2f}" if row[n] is not None else f"{'-':>17}" for n in names)
        print(f"{row['video']:34}{cells}")


if __name__ == "__main__":
    main()
