"""Metrics and `tsm test`: views averaged per video, dumps, unreadable videos reported."""

import json
import pickle

import numpy as np
import pytest

from temporalshift.cli import main
from temporalshift.engine.evaluate import confusion_matrix, metrics, topk_accuracy


def test_metrics_by_hand():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 2])
    m = metrics(scores, labels, 3)
    assert m["top1"] == 0.5  # videos 0 and 3
    assert topk_accuracy(scores, labels, 2) == 1.0
    assert m["per_class_accuracy"] == [1.0, 0.0, 1.0]
    assert m["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]
    assert confusion_matrix(np.array([2]), np.array([0]), 3)[0, 2] == 1
    assert metrics(np.ones((1, 4)), np.array([3]), 6)["per_class_accuracy"][5] is None  # absent class


@pytest.fixture(scope="module")
def trained(tiny_recipe, tmp_path_factory):
    work = tmp_path_factory.mktemp("trained")
    recipe = tiny_recipe(work, epochs=1, train=4, val=2, test=3)
    assert main(["train", str(recipe)]) == 0
    return recipe, work / "epoch_001.pt"


def test_cli_test_with_views_and_dumps(trained, tmp_path, capsys):
    recipe, ckpt = trained
    dump = tmp_path / "scores.json"
    args = ["test", str(recipe), str(ckpt), "--clips", "2", "--twice-sample", "on", "--crops", "three"]
    assert main([*args, "--dump", str(dump)]) == 0
    out = capsys.readouterr().out
    assert "24 videos x 12 views" in out and "top-1" in out  # 2 clips x 2 (twice) x 3 crops
    data = json.loads(dump.read_text())
    assert data["num_videos"] == 24 and len(data["videos"]) == 24 and len(data["confusion"]) == 8
    assert data["classes"][0] == "moving left" and data["videos"][0]["video"].endswith(".mp4")
    assert all(abs(sum(v["scores"]) - 1) < 1e-4 for v in data["videos"])  # averaged probabilities
    assert main(["test", str(recipe), str(ckpt), "--dump", str(tmp_path / "s.pkl"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["views_per_video"] == 2 and 0 <= summary["top1"] <= 1  # the zoo entry twice-samples
    with open(tmp_path / "s.pkl", "rb") as f:
        assert pickle.load(f)["num_videos"] == 24


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clips", "0"], "--clips must be at least 1, got 0"),
        (["--dump", "scores.txt"], "--dump must end in .json or .pkl, got scores.txt"),
        (["--dump", "d.json"], "--dump d.json is a folder"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(trained, tmp_path, capsys, monkeypatch, extra, message):
    recipe, ckpt = trained
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.json").mkdir()
    assert main(["test", str(recipe), str(ckpt), *extra]) == 2
    err = capsys.readouterr().err
    assert "tsm test: error:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "scores.txt").exists()


def test_unreadable_videos_are_reported_and_left_out(trained, tmp_path, capsys):
    recipe, ckpt = trained
    from temporalshift.engine.config import load_config

    cfg = load_config(recipe)
    root = cfg.data.root
    lines = tmp_path / "test.txt"
    good = open(f"{root}/test.txt").read().splitlines()[:3]
    (tmp_path / "broken.mp4").write_text("not a video")
    lines.write_text("\n".join([*[f"{root}/{g}" for g in good], f"{tmp_path}/broken.mp4 0"]) + "\n")
    assert main(["test", str(recipe), str(ckpt), "--set", f"data.test_list={lines}"]) == 0
    out = capsys.readouterr().out
    assert "3 videos x 2 views" in out and "1 unreadable video(s) left out" in out and "broken.mp4" in out


def test_labels_the_model_has_no_class_for_are_refused_before_testing(trained, tmp_path, capsys):
    recipe, ckpt = trained  # a model of 8 classes
    from temporalshift.engine.config import load_config

    root = load_config(recipe).data.root
    first = open(f"{root}/test.txt").read().splitlines()[0].split()[0]
    lines = tmp_path / "test.txt"
    lines.write_text(f"{root}/{first} 8\n")
    assert main(["test", str(recipe), str(ckpt), "--set", f"data.test_list={lines}"]) == 1
    err = capsys.readouterr().err
    assert "labels up to 8, but the model has 8 classes" in err and "Traceback" not in err


def test_whole_frame_views_of_different_shapes_are_tested_one_video_at_a_time(trained, tmp_path, capsys):
    recipe, ckpt = trained
    from temporalshift.data.encode import write_video
    from temporalshift.data.synthetic import numbered_frames

    for name, (h, w) in {"wide.mp4": (32, 56), "square.mp4": (32, 32)}.items():
        write_video(tmp_path / name, numbered_frames(8, h, w), fps=8)
    lines = tmp_path / "test.txt"
    lines.write_text(f"{tmp_path}/wide.mp4 0\n{tmp_path}/square.mp4 1\n")
    args = ["test", str(recipe), str(ckpt), "--crops", "full", "--set", f"data.test_list={lines}"]
    assert main(args) == 0
    assert "2 videos x 2 views" in capsys.readouterr().out


def test_a_dump_that_cannot_be_written_still_prints_the_results(trained, tmp_path, capsys, monkeypatch):
    import temporalshift.engine.evaluate as evaluate

    recipe, ckpt = trained

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "dump_results", disk_full)
    assert main(["test", str(recipe), str(ckpt), "--dump", str(tmp_path / "s.json")]) == 1
    out, err = capsys.readouterr()
    assert "top-1" in out and "could not be written to" in err and "No space left on device" in err
