"""Decoders: same frames for the same indices, whatever the backend, container or frame rate."""

import numpy as np
import pytest

from temporalshift.data.decode import BACKENDS, VideoDecodeError, open_video
from temporalshift.data.synthetic import read_frame_number

from .conftest import NUM_FRAMES

INDICES = [5, 3, 59, 30, 30, 0, 47, 11]


@pytest.mark.parametrize("kind", ["mp4", "mkv", "vfr"])
@pytest.mark.parametrize("backend", ["pyav", "opencv", "decord"])
def test_every_backend_returns_the_requested_frames(numbered_videos, kind, backend):
    with open_video(numbered_videos[kind], backend) as reader:
        assert len(reader) == NUM_FRAMES
        frames = reader.get_frames(INDICES)
    assert frames.dtype == np.uint8 and frames.shape == (len(INDICES), 64, 64, 3)
    assert [read_frame_number(f) for f in frames] == INDICES


def test_frame_folder_reader(numbered_videos):
    with open_video(numbered_videos["frames"]) as reader:
        assert len(reader) == NUM_FRAMES and reader.fps is None and reader.duration is None
        assert [read_frame_number(f) for f in reader.get_frames(INDICES)] == INDICES


def test_backends_agree_pixel_for_pixel_on_the_same_file(numbered_videos):
    decoded = {}
    for backend in ("pyav", "opencv", "decord"):
        with open_video(numbered_videos["mp4"], backend) as reader:
            decoded[backend] = reader.get_frames([0, 17, 59]).astype(int)
    # Same FFmpeg H.264 decoder underneath; colour conversion may differ by rounding only.
    assert np.abs(decoded["pyav"] - decoded["opencv"]).max() <= 3
    assert np.abs(decoded["pyav"] - decoded["decord"]).max() <= 3


def test_fps_and_duration(numbered_videos):
    with open_video(numbered_videos["mp4"]) as reader:
        assert reader.fps == 25 and reader.duration == pytest.approx(NUM_FRAMES / 25)
    with open_video(numbered_videos["vfr"]) as reader:  # irregular timestamps: duration from pts
        assert reader.duration > 0 and reader.fps > 0


def test_sequential_access_after_random_access(numbered_videos):
    with open_video(numbered_videos["mkv"]) as reader:  # a single keyframe: no seek can help
        for chunk in ([50, 51], [2, 3], [40], list(range(NUM_FRAMES))):
            assert [read_frame_number(f) for f in reader.get_frames(chunk)] == chunk


def test_out_of_range_index(numbered_videos):
    with open_video(numbered_videos["mp4"]) as reader:
        with pytest.raises(IndexError, match="frame 60 out of range"):
            reader.get_frames([60])


@pytest.mark.parametrize("backend", ["pyav", "opencv", "decord"])
def test_bad_files_raise_a_decode_error_naming_the_file(tmp_path, backend):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    for path, reason in ((tmp_path / "missing.mp4", "no such file"), (empty, "empty file"), (text, None)):
        with pytest.raises(VideoDecodeError, match=reason) as exc:
            open_video(path, backend)
        assert str(path) in str(exc.value)


def test_truncated_mp4_is_a_decode_error(numbered_videos, tmp_path):
    data = numbered_videos["mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError):
        with open_video(cut) as reader:
            reader.get_frames(range(len(reader)))


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video("x.mp4", "gstreamer")
    assert "pyav" in BACKENDS


def test_opencv_survives_a_header_that_overcounts(numbered_videos):
    with open_video(numbered_videos["mp4"], "opencv") as reader:
        reader._count = NUM_FRAMES + 20  # what a wrong container header looks like to OpenCV
        frames = reader.get_frames([10, NUM_FRAMES + 5])
        assert [read_frame_number(f) for f in frames] == [10, NUM_FRAMES - 1]  # clamped to the end
        assert len(reader) == NUM_FRAMES  # and the true length is learnt
