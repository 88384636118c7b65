"""The built-in moving-digits dataset: time-reversed class pairs, deterministic, real videos."""

import numpy as np

from temporalshift.cli import main
from temporalshift.data.datasets import read_annotations, read_label_map
from temporalshift.data.decode import open_video
from temporalshift.data.synthetic import CLASSES, MovingDigitsConfig, _digits, make_moving_digits, render_clip


def test_each_class_is_its_partner_played_backwards():
    digit = _digits()[5]
    for label in range(0, len(CLASSES), 2):
        forward = render_clip(digit, label, 8, 32, np.random.default_rng(3))
        backward = render_clip(digit, label + 1, 8, 32, np.random.default_rng(3))
        assert np.array_equal(forward[::-1], backward)  # same frames, reversed order
        assert not np.array_equal(forward, backward)  # but the clip itself changes over time


def test_generation_is_deterministic_and_resumable(tmp_path, capsys):
    config = MovingDigitsConfig(train_per_class=2, val_per_class=1, test_per_class=1, frames=8, size=32)
    paths = make_moving_digits(tmp_path / "a", config)
    again = make_moving_digits(tmp_path / "b", config)
    first = read_annotations(paths["train"])
    assert len(first) == 16 and sorted({r.label for r in first}) == list(range(8))
    assert read_label_map(paths["classes"]) == list(CLASSES)
    for rec in first[:3]:
        other = rec.path.replace(str(tmp_path / "a"), str(tmp_path / "b"))
        with open_video(rec.path) as r1, open_video(other) as r2:
            assert len(r1) == 8 and np.array_equal(r1.get_frames(range(8)), r2.get_frames(range(8)))
    assert again["train"].read_text() == paths["train"].read_text().replace("/a/", "/b/")
    mtime = (tmp_path / "a" / first[0].path).stat().st_mtime_ns
    make_moving_digits(tmp_path / "a", config)  # resumes: keeps finished videos
    assert (tmp_path / "a" / first[0].path).stat().st_mtime_ns == mtime
    assert main(["prepare", "digits", str(tmp_path / "a"), "--train-per-class", "3"]) == 1
    assert "other settings" in capsys.readouterr().err
