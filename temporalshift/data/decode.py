"""Video readers: one small API over PyAV (default), OpenCV, decord and folders of frames.

``open_video(path)`` returns a :class:`VideoReader`: ``len(reader)`` frames, ``reader.fps``,
``reader.duration`` and ``reader.get_frames(indices)`` -> uint8 RGB ``(T, H, W, 3)``.

The PyAV reader never trusts the container's frame count: it first demuxes the packets (no
decoding) to learn the presentation time of every frame and where the keyframes are. Frame ``i``
is then the ``i``-th frame in presentation order, which stays right for variable frame rate and
for containers whose header count is missing or wrong. To fetch a sparse set of frames it seeks
to the keyframe before a wanted frame only when that skips work; otherwise it keeps decoding
forward (seeking to every frame of a file with few keyframes would decode the same GOP again
and again). It trusts packet timestamps and keyframe flags only in containers that index them
(MP4/MOV, Matroska/WebM, AVI, FLV); in others (MPEG program and transport streams carry
timestamps on some packets only, and flag packets as keyframes that are not) it counts the
frames by decoding them and always reads forward from the first one. A seek that lands past its
target or on a frame it cannot place falls back to that forward reading too. Frames come out
upright: a display rotation in the file (phone videos) is applied.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

BACKENDS: tuple[str, ...] = ("pyav", "opencv", "decord", "frames")
# A seek costs about as much as decoding a few frames (flush + restart at a keyframe).
_SEEK_MARGIN = 4
DEFAULT_FRAME_TEMPLATE = "img_{:05d}.jpg"
# FFmpeg's names of the containers whose packets carry every frame's timestamp and true keyframe flags
_INDEXED_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv"})


class VideoDecodeError(Exception):
    """A video that cannot be opened or decoded; the message starts with its path."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@runtime_checkable
class VideoReader(Protocol):
    """What every backend offers."""

    path: str
    fps: float | None

    def __len__(self) -> int: ...

    @property
    def duration(self) -> float | None: ...

    def get_frames(self, indices: Sequence[int]) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


class _ReaderBase:
    path: str
    fps: float | None

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def duration(self) -> float | None:
        return len(self) / self.fps if self.fps else None

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        n = len(self)
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < n]
        if bad:
            raise IndexError(f"{self.path}: frame {bad[0]} out of range (video has {n} frames)")
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


class PyAVReader(_ReaderBase):
    """PyAV (FFmpeg) reader with a packet index and keyframe-aware seeking.

    Args:
        path: a video file.
        threads: decoder threads (FFmpeg's own); 0 lets FFmpeg choose.
        seek: jump to the keyframe before a wanted frame when that skips decoding (default);
            ``False`` decodes every frame from the start, as decode-everything loaders do.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, seek: bool = True) -> None:
        import av

        self.path = str(path)
        self.seek = seek
        self._container = None
        _check_file(Path(path))
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
            raise VideoDecodeError(path, f"cannot open ({_short(exc)})") from None
        if not self._container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.damage: str | None = None  # set when the file is readable only up to some point
        # by_count: frame i is the i-th frame decoded from the start (no timestamp index, no seeking)
        self._by_count = self._container.format.name not in _INDEXED_FORMATS
        if self._by_count:
            self._count_decoded_frames()
        else:
            self._index_packets()  # ends with the container rewound to the first frame
        self._frames_iter = self._container.decode(self._stream)
        self._next = 0  # index of the frame the decoder produces next (-1: unknown)

    def _index_packets(self) -> None:

        pts, keys = [], []

        def take(packet) -> bool:
            if packet.size == 0 or packet.pts is None:
                return False
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
            return True

        self._count_until_damage(self._container.demux(self._stream), take, "cannot read packets", "unreadable")
        self._pts = sorted(set(pts))
        self._pos_of_pts = {p: i for i, p in enumerate(self._pts)}
        # Keyframe positions in presentation order; frame 0 is always a valid restart point.
        self._keyframes = sorted({0, *(self._pos_of_pts[k] for k in keys)})
        self._check_length()
        self._container.seek(0, stream=self._stream)

    def _count_until_damage(self, items: Iterator, take: Callable[[object], bool], failing: str, lost: str) -> int:
        """Run through a file's packets or frames, counting those ``take`` keeps. A file that
        breaks after some of them is marked damaged and keeps what came before."""
        import av

        count = 0
        try:
            for item in items:
                count += take(item)
        except av.error.FFmpegError as exc:
            if not count:
                raise VideoDecodeError(self.path, f"{failing} ({_short(exc)})") from None
            self.damage = f"{lost} after frame {count} ({_short(exc)}), the rest is lost"
        if not count:
            raise VideoDecodeError(self.path, "no video frames")
        return count

    def _header_seconds(self) -> float | None:
        """The video's duration as the header states it: the stream's own, else the container's
        when the video is its only stream (an audio track may run longer than the video)."""
        stream = self._stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if self._container.duration and len(self._container.streams) == 1:
            return self._container.duration / 1_000_000  # microseconds
        return None

    def _check_length(self) -> None:
        """Flag a file whose packets stop well before the duration its header states."""
        header_s = self._header_seconds()
        found = self.duration
        if self.damage or not header_s or found is None or len(self._pts) < 2:
            return
        frame_s = found / len(self._pts)
        if found < header_s - max(2 * frame_s, 0.05 * header_s):
            self.damage = (
                f"ends after {len(self._pts)} frames ({found:.2f} s) but its header says {header_s:.2f} s"
                " (truncated or damaged)"
            )

    def _count_decoded_frames(self) -> None:
        """The frame count of a container without a reliable timestamp index: decode them all once."""
        count = self._count_until_damage(self._container.decode(self._stream), lambda _: True, "cannot decode",
                                         "undecodable")  # fmt: skip
        self._pts = list(range(count))  # positions stand in for timestamps: only len() reads them
        self._pos_of_pts, self._keyframes = {}, [0]
        self._container.seek(0, stream=self._stream)

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def duration(self) -> float | None:
        tb = self._stream.time_base
        if self._by_count or tb is None or len(self._pts) < 2:
            return super().duration
        step = (self._pts[-1] - self._pts[0]) / (len(self._pts) - 1)
        return float((self._pts[-1] - self._pts[0] + step) * tb)

    def _seek_to(self, position: int) -> None:
        self._container.seek(self._pts[position], stream=self._stream, backward=True, any_frame=False)
        self._frames_iter = self._container.decode(self._stream)
        self._next = position

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed) as uint8 RGB."""
        import av

        wanted = self._check_indices(indices)
        if not wanted:
            raise ValueError("get_frames needs at least one index")
        found: dict[int, np.ndarray] = {}
        try:
            for target in sorted(set(wanted)):
                if target in found:
                    continue
                use_seek = self.seek and not self._by_count
                key = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1] if use_seek else 0
                # Seek only when it pays: the decoder is past the target already, or the keyframe
                # before the target is far enough ahead that jumping beats decoding up to it.
                ahead = key - self._next
                if self._next < 0 or self._next > target or ahead > _SEEK_MARGIN:
                    self._seek_to(key)
                    if not self._decode_until(target, found, after_seek=key > 0):
                        self.seek = False  # the seek missed: from now on read forward from frame 0
                        self._seek_to(0)
                        self._decode_until(target, found)
                else:
                    self._decode_until(target, found)
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(self.path, f"decoding failed ({_short(exc)})") from None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoDecodeError(self.path, f"frame {missing[0]} could not be decoded (truncated?)")
        return np.stack([found[i] for i in wanted])

    def _decode_until(self, target: int, found: dict[int, np.ndarray], after_seek: bool = False) -> bool:
        """Decode up to frame ``target`` (converting it only). Right after a seek, returns False
        when the first frame cannot be placed or lies past the target: the seek missed."""
        for frame in self._frames_iter:
            if self._by_count:
                pos = self._next
            else:
                pos = self._pos_of_pts.get(frame.pts) if frame.pts is not None else None
                if pos is None and after_seek:
                    return False
                if pos is None:  # decoding forward from a known place: the next frame
                    pos = self._next if self._next >= 0 else 0
                if after_seek and pos > target:
                    return False
            after_seek = False
            self._next = pos + 1
            if pos >= target:
                if pos == target:
                    found[target] = _upright(frame)
                return True
            # A frame between the keyframe and the target: decoded, never converted.
        self._next = -1  # stream ended
        return not after_seek

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


# Containers whose frame count OpenCV reads from a per-frame index; for the others (Matroska,
# WebM, MPEG streams...) it estimates duration x fps, wrong for a variable frame rate
_COUNTED_IN_HEADER = frozenset({".mp4", ".m4v", ".mov", ".avi"})


class OpenCVReader(_ReaderBase):
    """OpenCV reader: sequential grab-and-skip. It counts the frames by grabbing them once where
    the container's header has no exact count, and survives a header that over-counts."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import cv2

        self.path = str(path)
        self._cap = None
        _check_file(Path(path))
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it")
        self._count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        if self._count <= 0 or Path(path).suffix.lower() not in _COUNTED_IN_HEADER:  # unknown or a guess
            self._count = self._count_frames()
        if self._count <= 0:
            raise VideoDecodeError(path, "no video frames")

    def _count_frames(self) -> int:
        import cv2

        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        n = 0
        while self._cap.grab():
            n += 1
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return n

    def __len__(self) -> int:
        return self._count

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        import cv2

        wanted = self._check_indices(indices)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        found: dict[int, np.ndarray] = {}
        targets = sorted(set(wanted))
        pos, last = 0, None
        for target in targets:
            while pos <= target:
                if not self._cap.grab():
                    break
                if pos == target:
                    ok, bgr = self._cap.retrieve()
                    if ok:
                        last = found[target] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                pos += 1
            if target not in found:
                break
        if last is None:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        if len(found) < len(targets):
            # The header over-counted: the video ends early. Learn the true length and give the
            # indices past the end its last frame.
            self._count = pos
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, pos - 1)
            ok, bgr = self._cap.read()
            if ok:
                last = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for t in targets:
                found.setdefault(t, last)
        return np.stack([found[i] for i in wanted])

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DecordReader(_ReaderBase):
    """decord (or decord2) reader: fast random access, where the package installs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            import decord
        except ImportError:
            raise ValueError("the decord backend needs `pip install decord2` (or decord)") from None
        self.path = str(path)
        _check_file(Path(path))
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # noqa: BLE001 - decord raises its own DECORDError types
            raise VideoDecodeError(path, f"decord cannot open it ({_short(exc)})") from None
        fps = self._vr.get_avg_fps()
        self.fps = float(fps) if fps else None

    def __len__(self) -> int:
        return len(self._vr)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = self._check_indices(indices)
        try:
            return self._vr.get_batch(wanted).asnumpy()
        except Exception as exc:  # noqa: BLE001
            raise VideoDecodeError(self.path, f"decoding failed ({_short(exc)})") from None


class FrameFolderReader(_ReaderBase):
    """A folder of extracted frames named by a template (``img_00001.jpg``, 1-based by default).

    Args:
        path: the folder.
        template: file name pattern with one integer field.
        start_index: number of the first frame (mmaction2 and the authors' lists start at 1).
        fps: the frame rate the frames were extracted at, if known.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        template: str = DEFAULT_FRAME_TEMPLATE,
        start_index: int = 1,
        fps: float | None = None,
    ) -> None:
        self.path = str(path)
        self.template = template
        self.start_index = start_index
        self.fps = fps
        folder = Path(path)
        if not folder.is_dir():
            raise VideoDecodeError(path, "no such frame folder")
        n = 0
        while (folder / template.format(start_index + n)).is_file():
            n += 1
        if n == 0:
            raise VideoDecodeError(path, f"no frames named like {template.format(start_index)}")
        self._count = n

    def __len__(self) -> int:
        return self._count

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        wanted = self._check_indices(indices)
        cache: dict[int, np.ndarray] = {}
        for i in set(wanted):
            file = os.path.join(self.path, self.template.format(self.start_index + i))
            try:
                with Image.open(file) as image:
                    cache[i] = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise VideoDecodeError(file, f"cannot decode image ({_short(exc)})") from None
        sizes = {frame.shape for frame in cache.values()}
        if len(sizes) > 1:
            raise VideoDecodeError(self.path, f"its frames differ in size ({', '.join(sorted(map(str, sizes)))})")
        return np.stack([cache[i] for i in wanted])


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that set an ``av.VideoFrame`` upright: the display rotation
    its file asks for (a phone's portrait video is stored landscape with a 90 or 270 degree matrix)."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    """``rgb`` (H, W, 3) turned ``turns`` quarter turns counter-clockwise."""
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _upright(frame) -> np.ndarray:
    """An ``av.VideoFrame`` as uint8 RGB, upright."""
    return upright(frame.to_ndarray(format="rgb24"), quarter_turns(frame))


def _short(exc: BaseException) -> str:
    """First line of an error, without the file name FFmpeg appends (the caller names the file)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return re.sub(r"(\[Errno -?\d+\] )|(: '[^']*'$)", "", first)[:200]


def open_video(
    path: str | os.PathLike[str],
    backend: str = "pyav",
    frame_template: str = DEFAULT_FRAME_TEMPLATE,
    start_index: int = 1,
) -> VideoReader:
    """Open a video file (or a folder of frames) for random access to its frames.

    A folder is always read as extracted frames. Raises :class:`VideoDecodeError` for a missing,
    empty or undecodable input.

    >>> with open_video("clip.mp4") as reader:          # doctest: +SKIP
    ...     frames = reader.get_frames([0, 10, 20])     # (3, H, W, 3) uint8 RGB
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend == "frames" or Path(path).is_dir():
        return FrameFolderReader(path, frame_template, start_index)
    if backend == "opencv":
        return OpenCVReader(path)
    if backend == "decord":
        return DecordReader(path)
    return PyAVReader(path)
