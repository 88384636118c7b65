"""Annotation files, label maps, and the dataset that turns them into clips.

Annotation formats (whitespace separated, ``#`` comments and blank lines ignored, relative paths
resolved against ``root``, by default the annotation file's folder):

* mmaction2 video list: ``path/to/video.mp4 LABEL``
* mmaction2 frame list and the authors' lists: ``frame/dir NUM_FRAMES LABEL``
* Something-Something V2 json (``[{"id": "78687", "template": "Holding [something] ..."}]``) with
  its ``labels.json`` (``{"Holding something next to something": "0", ...}``).

Bad data never stops a run: a missing, empty, truncated or undecodable video is logged with its
path and counted in a :class:`BadVideoLog`; in training another sample takes its place, in
testing it is reported and left out. The log is a small append-only file, so the counts from
DataLoader worker processes and DDP ranks all reach the epoch summary.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from temporalshift.data.decode import DEFAULT_FRAME_TEMPLATE, VideoDecodeError, open_video
from temporalshift.data.sampling import SamplingSpec, sample_test, sample_train
from temporalshift.data.transforms import TestTransform, TrainTransform, to_clip

log = logging.getLogger("temporalshift.data")


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: a file, or a folder of frames with its frame count."""

    path: str
    label: int
    num_frames: int | None = None

    @property
    def is_frames(self) -> bool:
        return self.num_frames is not None


def read_annotations(file: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[VideoRecord]:
    """Read an mmaction2 video or frame list (or the authors' ``dir num_frames label`` list).

    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "ann.txt"
    >>> _ = f.write_text("a.mp4 3\\nframes/b 120 1\\n")
    >>> [(r.path.endswith("a.mp4"), r.label, r.num_frames) for r in read_annotations(f)]
    [(True, 3, None), (False, 1, 120)]
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"annotation file not found: {file}")
    base = Path(root) if root is not None else file.parent
    records = []
    try:
        text = file.read_text(encoding="utf-8-sig")  # a byte-order mark is no part of the first path
    except UnicodeDecodeError:
        raise ValueError(f"{file} is not a text annotation list (a video or another binary file?)") from None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) >= 3 and parts[-2].isdigit():  # dir num_frames label
                path, frames, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
            elif len(parts) >= 2:
                path, frames, label = " ".join(parts[:-1]), None, int(parts[-1])
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"{file}:{n}: expected 'path label' or 'dir num_frames label', got {line!r}") from None
        if label < 0:
            raise ValueError(f"{file}:{n}: labels are class indices from 0, got {label}")
        if frames is not None and frames < 1:
            raise ValueError(f"{file}:{n}: a frame folder needs at least one frame, the list says {frames}")
        records.append(VideoRecord(str(base / path), label, frames))
    if not records:
        raise ValueError(f"{file} lists no videos")
    return records


def read_label_map(file: str | os.PathLike[str]) -> list[str]:
    """Class names by index, from a text file (one name per line, or ``index name`` lines as in
    UCF-101's ``classInd.txt``) or a json file (a list, or ``{name: index}`` as SSv2's labels)."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"label map not found: {file}")
    if file.suffix == ".json":
        data = json.loads(file.read_text())
        if isinstance(data, list):
            return [str(x) for x in data]
        by_index = {int(v): k for k, v in data.items()}
        return [by_index[i] for i in range(len(by_index))]
    lines = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    heads = [line.split(maxsplit=1) for line in lines]
    if all(len(h) == 2 and h[0].isdigit() for h in heads):
        ids = [int(h[0]) for h in heads]
        first = min(ids)  # classInd.txt is 1-based
        names = {i - first: h[1] for i, h in zip(ids, heads, strict=True)}
        return [names[i] for i in range(len(names))]
    return lines


def sthv2_template_label(template: str) -> str:
    """SSv2 class name from a video's template: ``"Holding [something]"`` -> ``"Holding something"``."""
    return template.replace("[", "").replace("]", "")


def read_sthv2(
    annotations: str | os.PathLike[str], labels: str | os.PathLike[str], video_dir: str | os.PathLike[str]
) -> list[VideoRecord]:
    """Something-Something V2 json annotations -> records of ``video_dir/{id}.webm``."""
    names = read_label_map(labels)
    index = {name: i for i, name in enumerate(names)}
    records = []
    for item in json.loads(Path(annotations).read_text()):
        name = sthv2_template_label(item["template"])
        if name not in index:
            raise ValueError(f"{annotations}: video {item['id']} has unknown class {name!r}")
        records.append(VideoRecord(str(Path(video_dir) / f"{item['id']}.webm"), index[name]))
    return records


def _remove_if_creator(path: str, creator: int) -> None:
    # forked DataLoader workers hold copies of the log: only its creator may delete the file
    if os.getpid() == creator:
        Path(path).unlink(missing_ok=True)


class BadVideoLog:
    """Append-only record of unreadable videos, shared by worker processes through a file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:  # a temporary file, removed with this log by the process that made it
            fd, path = tempfile.mkstemp(prefix="tsm-bad-videos-", suffix=".tsv")
            os.close(fd)
            weakref.finalize(self, _remove_if_creator, path, os.getpid())
        self.path = str(path)
        Path(self.path).touch()

    def add(self, video: str, reason: str) -> None:
        line = f"{video}\t{' '.join(reason.split())}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)  # one small O_APPEND write: atomic across processes
        finally:
            os.close(fd)

    def entries(self) -> dict[str, str]:
        """Unreadable videos and why (each counted once, however often it was tried)."""
        out: dict[str, str] = {}
        for line in Path(self.path).read_text().splitlines():
            video, _, reason = line.partition("\t")
            out.setdefault(video, reason)
        return out

    def clear(self) -> None:
        Path(self.path).write_text("")

    def summary(self) -> str:
        """One line for the end of an epoch, plus a line per file (at most 10)."""
        entries = self.entries()
        if not entries:
            return "all videos decoded"
        lines = [f"skipped {len(entries)} unreadable video(s):"]
        lines += [f"  {video}: {reason}" for video, reason in list(entries.items())[:10]]
        if len(entries) > 10:
            lines.append(f"  ... and {len(entries) - 10} more (see {self.path})")
        return "\n".join(lines)


class VideoDataset(Dataset):
    """Annotated videos -> clips.

    Training items are ``(clip, label)`` with clip float ``(T, 3, H, W)``; an unreadable video is
    logged and replaced by another (deterministically chosen) one. Test items are
    ``(views, label, index)`` with views ``(clips x crops, T, 3, H, W)``, or ``None`` for an
    unreadable video (drop it with :func:`collate_test`).

    Args:
        records: the videos (see :func:`read_annotations`).
        sampling: which frames (segments / dense, test clips, twice-sample).
        transform: a :class:`TrainTransform` (training) or :class:`TestTransform` (testing).
        backend: video reader backend (``"pyav"``, ``"opencv"``, ``"decord"``); frame folders
            are read as such.
        frame_template: file names inside frame folders.
        seed: makes augmentation and replacements reproducible, whatever the worker count.
        bad_log: where unreadable videos are recorded (a temporary file by default).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampling: SamplingSpec,
        transform: TrainTransform | TestTransform | Callable,
        backend: str = "pyav",
        frame_template: str = DEFAULT_FRAME_TEMPLATE,
        seed: int = 0,
        bad_log: BadVideoLog | None = None,
        max_replacements: int = 20,
    ) -> None:
        if not records:
            raise ValueError("the dataset is empty")
        self.records = list(records)
        self.sampling = sampling
        self.transform = transform
        self.train = isinstance(transform, TrainTransform)
        self.backend = backend
        self.frame_template = frame_template
        self.seed = seed
        # in shared memory: DataLoader workers (persistent ones too) hold a copy of the dataset made
        # when they started, and must still see every later set_epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.bad = bad_log or BadVideoLog()
        self.max_replacements = max_replacements
        self._fail_fast()

    @classmethod
    def from_file(
        cls, annotations: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, **kw
    ) -> VideoDataset:
        """Build from an annotation file (see :func:`read_annotations`)."""
        return cls(read_annotations(annotations, root), **kw)

    def _fail_fast(self) -> None:
        readable = [r for r in self.records if _exists(r)]
        if not readable:
            first = self.records[0].path
            raise ValueError(
                f"none of the {len(self.records)} videos in this dataset can be read "
                f"(first: {first}: missing or empty); check the annotation file's root folder"
            )
        missing = len(self.records) - len(readable)
        if missing:
            log.warning("%d of %d videos are missing or empty; they will be skipped", missing, len(self.records))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws each epoch (call before iterating, as with DistributedSampler);
        reaches the loader's worker processes, persistent or not."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def _read(self, record: VideoRecord, indices_fn: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with open_video(record.path, self.backend, self.frame_template) as reader:
            n = len(reader)
            if record.num_frames is not None and record.num_frames < n:
                n = record.num_frames  # trust the list when it claims fewer frames
            indices = indices_fn(n)
            frames = reader.get_frames(indices.reshape(-1).tolist())
        return frames, indices

    def __getitem__(self, index: int):
        if self.train:
            return self._train_item(index)
        return self._test_item(index)

    def _train_item(self, index: int) -> tuple[Tensor, int]:
        for attempt in range(self.max_replacements + 1):
            rng = np.random.default_rng([self.seed, self.epoch, index, attempt])
            record = self.records[index]
            try:
                frames, _ = self._read(record, lambda n, rng=rng: sample_train(n, self.sampling, rng))
            except (VideoDecodeError, IndexError, OSError) as exc:
                self._report(record, exc)
                index = int(rng.integers(len(self.records)))  # a replacement sample
                continue
            return self.transform(to_clip(frames), record.label, rng)
        raise RuntimeError(
            f"{self.max_replacements + 1} unreadable videos in a row; is the dataset broken? "
            f"({self.bad.path} lists them)"
        )

    def _test_item(self, index: int) -> tuple[Tensor, int, int] | None:
        record = self.records[index]
        try:
            frames, indices = self._read(record, lambda n: sample_test(n, self.sampling))
        except (VideoDecodeError, IndexError, OSError) as exc:
            self._report(record, exc)
            return None
        clips = to_clip(frames).unflatten(0, indices.shape)  # (clips, T, 3, H, W)
        views = torch.cat([self.transform(clip) for clip in clips])  # (clips*crops, T, 3, H, W)
        return views, record.label, index

    def _report(self, record: VideoRecord, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, VideoDecodeError) else str(exc)
        log.warning("unreadable video skipped: %s (%s)", record.path, reason)
        self.bad.add(record.path, reason)


def _exists(record: VideoRecord) -> bool:
    p = Path(record.path)
    return p.is_dir() if record.is_frames else (p.is_file() and p.stat().st_size > 0)


def collate_test(batch: list) -> tuple[Tensor, Tensor, Tensor] | None:
    """Stack test items ``(views, label, index)``, dropping unreadable (``None``) ones.

    Returns ``(views (B, V, T, 3, H, W), labels (B,), indices (B,))``, or ``None`` when the whole
    batch was unreadable.
    """
    items = [b for b in batch if b is not None]
    if not items:
        return None
    views = torch.stack([b[0] for b in items])
    labels = torch.tensor([b[1] for b in items])
    indices = torch.tensor([b[2] for b in items])
    return views, labels, indices
