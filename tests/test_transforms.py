"""Clip transforms: one set of random parameters per clip, the published crops, normalization."""

import numpy as np
import pytest
import torch

from temporalshift.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TestTransform,
    TrainTransform,
    flip_label_map,
    multi_scale_crop_params,
    normalize,
    resize_short_side,
    to_clip,
)


def _clip(t=4, h=240, w=320):
    """Frames with a horizontal ramp and the frame index in the red channel's corner."""
    x = torch.zeros(t, 3, h, w, dtype=torch.uint8)
    x[:, 1] = torch.linspace(0, 255, w).round().to(torch.uint8)
    for i in range(t):
        x[i, 0] = 40 * i
    return x


def test_train_transform_uses_the_same_crop_and_flip_for_every_frame():
    clip = _clip()
    for seed in range(20):
        out, _ = TrainTransform(size=112, resize_short=128)(clip, 0, np.random.default_rng(seed))
        assert out.shape == (4, 3, 112, 112) and out.dtype == torch.float32
        green = out[:, 1]
        assert torch.allclose(green, green[0].expand_as(green))  # identical geometry on all frames
        red = out[:, 0, 0, 0]
        assert torch.all(red[1:] > red[:-1])  # frame order and content are kept


def test_flip_happens_about_half_the_time_and_maps_labels():
    clip = _clip()
    t = TrainTransform(size=112, resize_short=128, crop="center", flip_labels={0: 1, 1: 0})
    flipped = 0
    for seed in range(200):
        out, label = t(clip, 0, np.random.default_rng(seed))
        is_flipped = out[0, 1, 0, 0] > out[0, 1, 0, -1]  # ramp now decreases left to right
        assert label == (1 if is_flipped else 0)
        flipped += int(is_flipped)
    assert 70 < flipped < 130
    no_flip = TrainTransform(size=112, resize_short=128, crop="center", flip=0.0)
    assert all(no_flip(clip, 5, np.random.default_rng(s))[1] == 5 for s in range(20))


def test_multi_scale_crop_sizes_and_positions():
    sizes, positions = set(), set()
    for seed in range(400):
        top, left, ch, cw = multi_scale_crop_params(256, 340, 224, np.random.default_rng(seed))
        sizes.add((ch, cw))
        positions.add((top, left))
        assert 0 <= top <= 256 - ch and 0 <= left <= 340 - cw
    scales = [256, 224, 192, 168]  # 256 * (1, .875, .75, .66); int(256 * .875) = 224 exactly
    allowed = {(scales[i], scales[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert sizes == allowed
    assert len(positions) > 13  # 13 fixed positions, for several crop sizes


def test_random_resized_crop_changes_scale():
    t = TrainTransform(size=64, crop="random_resized", resize_short=None)
    outs = [t(_clip(), 0, np.random.default_rng(s))[0] for s in range(5)]
    assert all(o.shape == (4, 3, 64, 64) for o in outs)
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("crops, views, shape", [("center", 1, (224, 224)), ("three", 3, (224, 224)),
                                                 ("ten", 10, (224, 224)), ("full", 1, (256, 341))])  # fmt: skip
def test_test_crops(crops, views, shape):
    out = TestTransform(size=224, resize_short=256, crops=crops)(_clip())
    assert out.shape == (views, 4, 3, *shape)
    if crops == "three":  # left, centre and right of the 341-wide frame
        lefts = [v[0, 1, 0, 0].item() for v in out]
        assert lefts[0] < lefts[1] < lefts[2]
    if crops == "ten":  # the last five are the first five flipped
        assert torch.equal(out[5:], out[:5].flip(-1))


def test_resize_short_side_and_normalize():
    assert resize_short_side(_clip(h=240, w=320), 256).shape[-2:] == (256, 341)
    assert resize_short_side(_clip(h=320, w=240), 128).shape[-2:] == (171, 128)
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    y = normalize(x)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(y[0, :, 0, 0], torch.tensor(expected))


def test_to_clip_layout():
    frames = np.zeros((2, 5, 7, 3), np.uint8)
    frames[..., 2] = 9
    clip = to_clip(frames)
    assert clip.shape == (2, 3, 5, 7) and clip[:, 2].eq(9).all()


def test_flip_label_map_for_something_something():
    names = ["Pushing something from left to right", "Pushing something from right to left",
             "Turning the camera left while filming something",
             "Turning the camera right while filming something", "Tearing something into two pieces"]  # fmt: skip
    assert flip_label_map(names) == {0: 1, 1: 0, 2: 3, 3: 2}
