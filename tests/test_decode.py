"""Decoders: same frames for the same indices, whatever the backend, container or frame rate."""

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from temporalshift.data.decode import BACKENDS, VideoDecodeError, open_video
from temporalshift.data.encode import write_video
from temporalshift.data.synthetic import numbered_frames, read_frame_number

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


@pytest.mark.parametrize("suffix, codec", [(".mpg", "mpeg2video"), (".ts", "libx264")])
def test_mpeg_program_and_transport_streams_give_the_requested_frames(tmp_path, suffix, codec):
    # Their packets carry timestamps on some packets only (and MPEG-PS flags non-keyframes as
    # keyframes): seeking by the packet index returned other frames, or none
    path = tmp_path / f"n{suffix}"
    write_video(path, numbered_frames(NUM_FRAMES), fps=25, codec=codec, bit_rate=2_000_000, gop=12)
    with open_video(path) as reader:
        assert len(reader) == NUM_FRAMES
        assert [read_frame_number(f) for f in reader.get_frames(INDICES)] == INDICES


def test_a_seek_that_lands_past_its_target_falls_back_to_reading_forward(numbered_videos, monkeypatch):
    with open_video(numbered_videos["mp4"]) as reader:
        real_seek = reader._seek_to
        monkeypatch.setattr(reader, "_seek_to", lambda pos: real_seek(min(pos + 10, NUM_FRAMES - 1)))  # overshoots
        assert [read_frame_number(f) for f in reader.get_frames([35, 12])] == [35, 12]
        assert reader.seek is False  # no more seeking in this file


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_frames_come_out_upright_whatever_display_rotation_the_file_asks_for(tmp_path, degrees):
    import av

    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:16, :16] = 255  # a white top-left corner, stored landscape
    path = tmp_path / f"rot{degrees}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv444p"
        if not hasattr(stream, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display rotation")
        stream.set_display_rotation(degrees)
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    expected = np.rot90(frame, degrees // 90)  # FFmpeg's display matrix turns counter-clockwise
    for backend in ("pyav", "opencv"):  # OpenCV applies it too: both give the same picture
        with open_video(path, backend) as reader:
            got = reader.get_frames([1])[0]
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() < 8


def test_opencv_counts_the_frames_of_a_variable_frame_rate_matroska(tmp_path):
    path = tmp_path / "vfr.mkv"  # OpenCV's header count for Matroska is duration x fps: 3x too many here
    pts = [0, 1, 2, 10, 11, 12, 50, 51, 52, 53, 54, 100, 101, 102, 200, 201, 202, 203, 204, 205]
    write_video(path, numbered_frames(len(pts)), fps=25, pts=pts, time_base=Fraction(1, 100))
    with open_video(path, "opencv") as reader:
        assert len(reader) == len(pts)
        assert [read_frame_number(f) for f in reader.get_frames([3, 19])] == [3, 19]


def test_a_frame_folder_whose_frames_differ_in_size_is_a_decode_error(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(1, 5):
        Image.fromarray(np.zeros((40, 60 if i == 3 else 50, 3), np.uint8)).save(folder / f"img_{i:05d}.jpg")
    with open_video(folder) as reader, pytest.raises(VideoDecodeError, match="frames differ in size"):
        reader.get_frames([0, 2])
