"""Frame extraction, resizing, checking and repairing: parallel, resumable, atomic."""

import json
import shutil

from temporalshift.cli import main
from temporalshift.data.datasets import VideoRecord
from temporalshift.data.decode import open_video
from temporalshift.data.prepare import check_dataset, check_video, extract_frames, resize_video
from temporalshift.data.synthetic import read_frame_number

from .conftest import NUM_FRAMES


def _tree(tmp_path, numbered_videos):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    shutil.copy(numbered_videos["mp4"], src / "a" / "one.mp4")
    shutil.copy(numbered_videos["mkv"], src / "two.mkv")
    (src / "broken.mp4").write_text("not a video")
    return src


def test_extract_frames_is_complete_and_resumable(tmp_path, numbered_videos, capsys):
    src = _tree(tmp_path, numbered_videos)
    out = tmp_path / "frames"
    assert main(["prepare", "frames", str(src), str(out), "--workers", "2"]) == 1  # the broken one
    captured = capsys.readouterr()
    assert "frames: 2 done, 0 already there, 1 failed" in captured.out
    assert "broken.mp4" in captured.err
    files = sorted((out / "a" / "one").iterdir())
    assert len(files) == NUM_FRAMES and files[0].name == "img_00001.jpg"
    with open_video(out / "a" / "one") as reader:
        assert [read_frame_number(f) for f in reader.get_frames([0, 31, 59])] == [0, 31, 59]
    assert not list(out.glob(".*part*"))  # no temporary folder left behind
    assert main(["prepare", "frames", str(src), str(out), "--workers", "1"]) == 1
    assert "frames: 0 done, 2 already there, 1 failed" in capsys.readouterr().out


def test_interrupted_extraction_leaves_no_finished_looking_output(tmp_path, numbered_videos, monkeypatch):
    import temporalshift.data.prepare as prepare

    real = prepare._iter_frames

    def explode(*_a, **_k):
        yield next(iter(real(numbered_videos["mp4"], None)))
        raise OSError("disk full")

    monkeypatch.setattr(prepare, "_iter_frames", explode)
    out = tmp_path / "frames" / "x"
    try:
        extract_frames(numbered_videos["mp4"], out)
    except OSError:
        pass
    assert not out.exists() and not list(out.parent.iterdir())


def test_resize_video_keeps_every_frame(tmp_path, numbered_videos):
    out = tmp_path / "small.mp4"
    assert resize_video(numbered_videos["vfr"], out, short_side=32).status == "done"
    with open_video(out) as reader:
        assert len(reader) == NUM_FRAMES
        frames = reader.get_frames([0, 29, 59])
    assert frames.shape[1:] == (32, 32, 3)
    assert [read_frame_number(f) for f in frames] == [0, 29, 59]
    assert resize_video(numbered_videos["vfr"], out, short_side=32).status == "skipped"


def test_cli_resize(tmp_path, numbered_videos, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(numbered_videos["mkv"], src / "v.mkv")
    assert main(["prepare", "resize", str(src), str(tmp_path / "out"), "--short-side", "48", "--workers", "1"]) == 0
    with open_video(tmp_path / "out" / "v.mp4") as reader:
        assert reader.get_frames([0]).shape == (1, 48, 48, 3)


def test_check_finds_and_repairs_broken_videos(tmp_path, numbered_videos):
    good = tmp_path / "good.mp4"
    shutil.copy(numbered_videos["mp4"], good)
    damaged = tmp_path / "damaged.mkv"  # matroska: damage in the middle leaves the rest readable
    mkv = numbered_videos["mkv"].read_bytes()
    damaged_bytes = mkv[: len(mkv) // 2] + bytes(2000) + mkv[len(mkv) // 2 + 2000 :]
    damaged.write_bytes(damaged_bytes)
    text = tmp_path / "text.mp4"
    text.write_text("nope")
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(numbered_videos["frames"] / "img_00001.jpg", frames / "img_00001.jpg")
    records = [
        VideoRecord(str(good), 0),
        VideoRecord(str(text), 0),
        VideoRecord(str(frames), 0, num_frames=10),
    ]
    checks = {c.path: c for c in check_dataset(records, tmp_path / "report.json", full=True, workers=2)}
    assert checks[str(good)].problem == "" and checks[str(good)].frames == NUM_FRAMES
    assert "cannot open" in checks[str(text)].problem
    assert checks[str(frames)].problem == "has 1 frames, the list claims 10"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["checked"] == 3 and len(report["problems"]) == 2
    check = check_video(VideoRecord(str(damaged), 0), full=True, repair=True)
    assert "truncated or damaged" in check.problem and check.repaired
    assert (tmp_path / "damaged.mkv.broken").read_bytes() == damaged_bytes
    fixed = check_video(VideoRecord(str(damaged), 0), full=True)
    assert fixed.problem == "" and fixed.frames == check.frames  # every frame that could be saved


def test_cli_check(tmp_path, numbered_videos, capsys):
    shutil.copy(numbered_videos["mp4"], tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"")
    ann = tmp_path / "list.txt"
    ann.write_text("good.mp4 0\nbad.mp4 1\n")
    assert main(["prepare", "check", str(ann), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "checked 2 videos: 1 good, 1 with problems" in out and "bad.mp4: empty file" in out
    assert json.loads((tmp_path / "list.txt.check.json").read_text())["checked"] == 2
