"""`tsm prepare` never overwrites what it did not make, refuses bad numbers and survives bad videos."""

import json
import shutil

import av
import numpy as np
import pytest

from temporalshift.cli import main
from temporalshift.data.prepare import extract_frames, resize_video
from temporalshift.data.synthetic import MovingDigitsConfig, make_moving_digits

TINY = MovingDigitsConfig(train_per_class=1, val_per_class=1, test_per_class=1, frames=4, size=16)
DIGITS_ARGS = ["--train-per-class", "1", "--val-per-class", "1", "--test-per-class", "1"]


def _audio_only(path):
    """An mp4 with one AAC stream and no video at all."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _truncated_in_index(src, dest):
    """``src`` (an mp4 with its index at the end) cut off half-way through the index."""
    data = src.read_bytes()
    at = data.index(b"moov") - 4
    dest.write_bytes(data[: at + int.from_bytes(data[at : at + 4], "big") // 2])


# --- 1. prepare digits: a folder it did not make is not its to overwrite ----------------------------


@pytest.mark.parametrize("name", ["train.txt", "classes.txt", "videos/train/moving_left_00000.mp4"])
def test_digits_refuses_to_overwrite_the_users_files(tmp_path, capsys, name):
    mine = tmp_path / "data" / name
    mine.parent.mkdir(parents=True)
    mine.write_text("my own\n")
    assert main(["prepare", "digits", str(tmp_path / "data"), *DIGITS_ARGS]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(mine) in err and "error:" in err
    assert mine.read_text() == "my own\n"
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == [mine]  # nothing written


def test_digits_still_generates_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert make_moving_digits(tmp_path / "empty", TINY)["train"].is_file()
    assert make_moving_digits(tmp_path / "new" / "deeper", TINY)["train"].is_file()
    assert make_moving_digits(tmp_path / "empty", TINY)["train"].is_file()  # a re-run with the same settings
    with pytest.raises(ValueError, match="other settings"):
        make_moving_digits(tmp_path / "empty", MovingDigitsConfig(train_per_class=2, frames=4, size=16))

    import temporalshift.data.synthetic as synthetic

    real, written = synthetic.write_video, []

    def interrupted(path, *a, **k):  # the run stops after two videos
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(synthetic, "write_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_moving_digits(tmp_path / "cut", TINY)
    monkeypatch.setattr(synthetic, "write_video", real)
    paths = make_moving_digits(tmp_path / "cut", TINY)  # the interrupted run's own videos do not block it
    assert all(p.is_file() for p in written) and len(paths["train"].read_text().split()) == 16


def test_digits_refuses_a_foreign_dataset_json(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.json").write_text('{"name": "mine"}')
    assert main(["prepare", "digits", str(tmp_path / "d"), *DIGITS_ARGS]) == 1
    assert "not written by the moving-digits generator" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dataset.json"]


def test_recipe_data_root_gets_the_same_protection(tmp_path, tiny_recipe, capsys):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "val.txt").write_text("my list\n")
    recipe = tiny_recipe(tmp_path / "run", epochs=1, root=root)
    assert main(["train", str(recipe)]) == 1
    assert str(root / "val.txt") in capsys.readouterr().err
    assert (root / "val.txt").read_text() == "my list\n" and sorted(p.name for p in root.iterdir()) == ["val.txt"]


# --- 2. frames / resize: two sources, one output --------------------------------------------------


@pytest.mark.parametrize("step", [["frames"], ["resize", "--short-side", "32"]])
def test_two_videos_with_one_output_are_refused_before_any_work(tmp_path, numbered_videos, capsys, step):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    shutil.copy(numbered_videos["mp4"], src / "a" / "clip.mp4")
    shutil.copy(numbered_videos["mkv"], src / "a" / "clip.mkv")
    shutil.copy(numbered_videos["mp4"], src / "other.mp4")
    out = tmp_path / "out"
    assert main(["prepare", step[0], str(src), str(out), *step[1:], "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(src / "a" / "clip.mp4") in err and str(src / "a" / "clip.mkv") in err and "rename one" in err
    assert not out.exists()


def test_frames_refuses_an_output_inside_another(tmp_path, numbered_videos, capsys):
    src = tmp_path / "src"
    (src / "clip").mkdir(parents=True)
    shutil.copy(numbered_videos["mp4"], src / "clip.mp4")  # frames go to out/clip/
    shutil.copy(numbered_videos["mp4"], src / "clip" / "x.mp4")  # frames go to out/clip/x/
    assert main(["prepare", "frames", str(src), str(tmp_path / "out"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert str(src / "clip.mp4") in err and str(src / "clip" / "x.mp4") in err
    assert not (tmp_path / "out").exists()


# --- 3. a bad video is a failed job, never a traceback -----------------------------------------------


@pytest.fixture
def bad_tree(tmp_path, numbered_videos):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(numbered_videos["mp4"], src / "good.mp4")
    _audio_only(src / "audio.mp4")
    _truncated_in_index(numbered_videos["mp4"], src / "cut.mp4")
    with pytest.raises(av.error.EOFError):  # what used to escape the per-video guard
        av.open(str(src / "cut.mp4"))
    return src


@pytest.mark.parametrize("workers", ["1", "2"])
def test_frames_skips_audio_only_and_truncated_videos(tmp_path, bad_tree, capsys, workers):
    out = tmp_path / f"frames{workers}"
    assert main(["prepare", "frames", str(bad_tree), str(out), "--workers", workers]) == 1
    captured = capsys.readouterr()
    assert "frames: 1 done, 0 already there, 2 failed" in captured.out
    assert f"failed: {bad_tree / 'audio.mp4'}: no video stream\n" in captured.err
    assert f"failed: {bad_tree / 'cut.mp4'}: " in captured.err and "Traceback" not in captured.err
    assert len(list((out / "good").iterdir())) == 60
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # no temporary folders left behind


def test_resize_names_a_failed_video_once(tmp_path, bad_tree, capsys):
    assert (
        main(["prepare", "resize", str(bad_tree), str(tmp_path / "out"), "--short-side", "32", "--workers", "1"]) == 1
    )
    captured = capsys.readouterr()
    assert "resized: 1 done, 0 already there, 2 failed" in captured.out
    assert f"failed: {bad_tree / 'audio.mp4'}: no video stream\n" in captured.err
    assert captured.err.count(str(bad_tree / "cut.mp4")) == 1


# --- 4. numbers out of range -----------------------------------------------------------------------


@pytest.mark.parametrize("step,side", [("resize", "-5"), ("resize", "0"), ("frames", "0"), ("frames", "-1")])
def test_short_side_below_one_is_refused(tmp_path, numbered_videos, capsys, step, side):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(numbered_videos["mp4"], src / "v.mp4")
    assert main(["prepare", step, str(src), str(tmp_path / "out"), "--short-side", side, "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "short side" in err and side in err
    assert not (tmp_path / "out").exists()


def test_library_refuses_short_side_below_one(tmp_path, numbered_videos):
    with pytest.raises(ValueError, match="short side"):
        resize_video(numbered_videos["mp4"], tmp_path / "v.mp4", short_side=0)
    with pytest.raises(ValueError, match="short side"):
        extract_frames(numbered_videos["mp4"], tmp_path / "v", short_side=-3)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "flag,value", [("--train-per-class", "-1"), ("--train-per-class", "0"), ("--val-per-class", "-2"),
                   ("--val-per-class", "0"), ("--test-per-class", "-1"), ("--test-per-class", "0")]
)  # fmt: skip
def test_digits_counts_below_one_are_refused(tmp_path, capsys, flag, value):
    assert main(["prepare", "digits", str(tmp_path / "d"), flag, value]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at least 1 video per class" in err and value in err
    assert not (tmp_path / "d").exists()


def test_check_prints_its_findings_even_when_the_report_cannot_be_written(numbered_videos, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{numbered_videos['mp4']} 0\n")
    (tmp_path / "taken").mkdir()
    assert main(["prepare", "check", str(listing), "--report", str(tmp_path / "taken")]) == 1
    out, err = capsys.readouterr()
    assert "checked 1 videos: 1 good" in out and "the report could not be written" in err
    assert main(["prepare", "check", str(listing), "--report", str(tmp_path / "new" / "r.json")]) == 0
    assert json.loads((tmp_path / "new" / "r.json").read_text())["checked"] == 1


def test_check_on_a_video_instead_of_a_list_names_it(numbered_videos, capsys):
    assert main(["prepare", "check", str(numbered_videos["mp4"])]) == 1
    err = capsys.readouterr().err
    assert "is not a text annotation list" in err and str(numbered_videos["mp4"]) in err


def test_stream_of_an_audio_only_file_and_odd_numbers_are_one_line(tmp_path, capsys):
    _audio_only(tmp_path / "audio.mp4")
    assert main(["stream", str(tmp_path / "audio.mp4"), "--model", "tsm_mobilenetv2_online_1x1x8_k400"]) == 1
    err = capsys.readouterr().err
    assert "has no video stream" in err and "Traceback" not in err
    for flags, message in ((["--window", "0"], "--window must be"), (["--max-frames", "0"], "--max-frames must")):
        assert main(["stream", str(tmp_path / "audio.mp4"), "--model", "tsm_mobilenetv2_online_1x1x8_k400",
                     *flags]) == 2  # fmt: skip
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--template", "x"], "must give one file name per frame number"),
        (["--template", "{x}.jpg"], "is not a file name with one {} number field"),
        (["--template", "a/{}.jpg"], "without folders"),
        (["--template", "{:05d}.txt"], "must end in .jpg"),
        (["--workers", "-1"], "--workers must be 0 (one per core) or more"),
    ],
)
def test_frames_checks_its_options_before_any_work(numbered_videos, tmp_path, capsys, flags, message):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(numbered_videos["mp4"], src / "clip.mp4")
    assert main(["prepare", "frames", str(src), str(tmp_path / "out"), *flags]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_frames_and_resize_refuse_to_write_into_their_source(numbered_videos, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(numbered_videos["mp4"], src / "clip.mp4")
    for args in (["frames", str(src), str(src)], ["resize", str(src), str(src / "small")]):
        assert main(["prepare", *args]) == 2
        assert "not into it" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == ["clip.mp4"]
