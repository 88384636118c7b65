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


def test_prepare_finds_videos_through_symlinked_folders_and_publishes_readable_frames(tmp_path, numbered_videos):
    from temporalshift.atomic import _umask

    src = tmp_path / "src"
    src.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(numbered_videos["mp4"], elsewhere / "one.mp4")
    (src / "linked").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(src)  # a link cycle must end, each folder seen once
    assert main(["prepare", "frames", str(src), str(tmp_path / "out"), "--workers", "1"]) == 0
    folder = tmp_path / "out" / "linked" / "one"
    assert len(list(folder.iterdir())) == NUM_FRAMES
    assert folder.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not the temporary folder's 0700


def test_check_trusts_the_video_streams_duration_not_a_longer_audio_track(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "talk.mp4"  # 1 s of video, 3 s of audio
    with av.open(str(path), "w") as container:
        video, audio = container.add_stream("libx264", rate=25), container.add_stream("aac", rate=16000)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for _ in range(25):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for i in range(46):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 16000, i * 1024
            for packet in audio.encode(samples):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    check = check_video(VideoRecord(str(path), 0), repair=True)
    assert check.problem == "" and check.frames == 25 and not check.repaired


def test_check_opens_frame_folders_by_template_and_a_failed_repair_keeps_no_backup(
    tmp_path, numbered_videos, capsys, monkeypatch
):
    import temporalshift.data.prepare as prepare

    frames = tmp_path / "sth" / "100"
    frames.mkdir(parents=True)
    for i in range(1, 4):  # Something-Something V1's names
        shutil.copy(numbered_videos["frames"] / f"img_{i:05d}.jpg", frames / f"{i:05d}.jpg")
    ann = tmp_path / "list.txt"
    ann.write_text("sth/100 3 0\n")
    assert main(["prepare", "check", str(ann), "--template", "{:05d}.jpg", "--workers", "1"]) == 0
    assert "1 good, 0 with problems" in capsys.readouterr().out
    damaged = tmp_path / "damaged.mkv"
    mkv = numbered_videos["mkv"].read_bytes()
    damaged.write_bytes(mkv[: len(mkv) // 2] + bytes(2000) + mkv[len(mkv) // 2 + 2000 :])

    def encoder_fails(*_a, **_k):
        raise RuntimeError("the encoder refused the frames")

    monkeypatch.setattr(prepare, "write_video", encoder_fails)
    check = check_video(VideoRecord(str(damaged), 0), full=True, repair=True)
    assert check.problem and not check.repaired and not (tmp_path / "damaged.mkv.broken").exists()
