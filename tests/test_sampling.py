"""Samplers: the exact indices of each protocol, checked end to end on a numbered video."""

import numpy as np
import pytest

from temporalshift.data.decode import open_video
from temporalshift.data.sampling import SamplingSpec, sample_test, sample_train
from temporalshift.data.synthetic import read_frame_number

from .conftest import NUM_FRAMES


def _decoded_numbers(path, indices):
    with open_video(path) as reader:
        return [read_frame_number(f) for f in reader.get_frames(np.asarray(indices).reshape(-1).tolist())]


@pytest.mark.parametrize(
    "spec, expected",
    [
        # 60 frames, 8 segments of 7.5: centres at int(3.75 + 7.5 k)
        (SamplingSpec(num_segments=8), [[3, 11, 18, 26, 33, 41, 48, 56]]),
        # twice-sample adds the segment starts int(7.5 k)
        (
            SamplingSpec(num_segments=8, twice_sample=True),
            [[3, 11, 18, 26, 33, 41, 48, 56], [0, 7, 15, 22, 30, 37, 45, 52]],
        ),
        # 3 test clips at 1/6, 3/6, 5/6 of each 15-frame segment
        (SamplingSpec(num_segments=4, test_clips=3), [[2, 17, 32, 47], [7, 22, 37, 52], [12, 27, 42, 57]]),
        # dense: 8 frames stride 64 // 8 = 8 in a 64-frame window; 60 < 64, so one window wraps
        (SamplingSpec(mode="dense", num_segments=8, test_clips=2), [[0, 8, 16, 24, 32, 40, 48, 56]] * 2),
        # dense with a 16-frame window: stride 2, 3 windows evenly from 0 to 44
        (
            SamplingSpec(mode="dense", num_segments=8, window=16, test_clips=3),
            [[0, 2, 4, 6, 8, 10, 12, 14], [22, 24, 26, 28, 30, 32, 34, 36], [44, 46, 48, 50, 52, 54, 56, 58]],
        ),
        # "2x3x4": 4 segments of snippets of 2 frames 3 apart, over the 55 usable starts
        (SamplingSpec.parse("2x3x4"), [[6, 9, 20, 23, 34, 37, 48, 51]]),
    ],
    ids=["segments", "twice", "multi-clip", "dense-wrap", "dense-window16", "2x3x4"],
)
def test_test_sampling_indices_are_exact_and_decoded_as_such(numbered_videos, spec, expected):
    indices = sample_test(NUM_FRAMES, spec)
    assert indices.tolist() == expected
    assert indices.shape == (spec.test_views, spec.frames_per_clip)
    assert _decoded_numbers(numbered_videos["mp4"], indices) == np.asarray(expected).reshape(-1).tolist()


def test_train_segments_draw_one_random_frame_inside_each_segment(numbered_videos):
    spec = SamplingSpec(num_segments=8)
    seen = set()
    for seed in range(200):
        idx = sample_train(NUM_FRAMES, spec, np.random.default_rng(seed))
        for k, i in enumerate(idx):
            assert int(7.5 * k) <= i < 7.5 * (k + 1)  # frame k comes from segment k
        seen.update(idx.tolist())
    assert seen == set(range(NUM_FRAMES))  # every frame can be drawn
    idx = sample_train(NUM_FRAMES, spec, np.random.default_rng(7))
    assert idx.tolist() == sample_train(NUM_FRAMES, spec, np.random.default_rng(7)).tolist()
    assert _decoded_numbers(numbered_videos["vfr"], idx) == idx.tolist()


def test_train_dense_is_a_strided_run_inside_the_video():
    spec = SamplingSpec(mode="dense", num_segments=8, window=64)
    for seed in range(50):
        idx = sample_train(200, spec, np.random.default_rng(seed))
        assert np.all(np.diff(idx) == 8) and 0 <= idx[0] <= 200 - 64


@pytest.mark.parametrize("frames", [1, 3, 7])
def test_short_videos_repeat_frames_in_order(frames):
    spec = SamplingSpec(num_segments=8)
    expected = np.floor(np.arange(8) * frames / 8).astype(int).tolist()
    assert sample_train(frames, spec, np.random.default_rng(0)).tolist() == expected
    # testing takes the authors' segment centres, int(tick / 2 + tick * x), and starts with twice-sample
    tick = frames / 8
    centres, starts = [int(tick / 2 + tick * x) for x in range(8)], [int(tick * x) for x in range(8)]
    assert sample_test(frames, spec).tolist() == [centres]
    assert sample_test(frames, SamplingSpec(num_segments=8, twice_sample=True)).tolist() == [centres, starts]


def test_parse_and_validation():
    assert SamplingSpec.parse("1x1x8") == SamplingSpec(num_segments=8)
    assert SamplingSpec.parse("dense").mode == "dense"
    with pytest.raises(ValueError, match="expected e.g. '1x1x8'"):
        SamplingSpec.parse("8 frames")
    with pytest.raises(ValueError, match="num_segments must be >= 1"):
        SamplingSpec(num_segments=0)
    with pytest.raises(ValueError, match="dense sampling has no segments"):  # it would count 2x the views it samples
        SamplingSpec.parse("dense", test_clips=10, twice_sample=True)
    with pytest.raises(ValueError, match="at least one frame"):
        sample_test(0, SamplingSpec())
