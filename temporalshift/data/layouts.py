"""Official layouts of the public action datasets -> our annotation lists and label maps.

Each reader takes the dataset's root folder as its publishers ship it and returns the class names
and, per split, ``(path, label, num_frames or None)`` rows. What each expects under ``root``:

* ``kinetics400`` / ``kinetics600`` / ``kinetics700``: ``annotations/{train,val,test}.csv``
  (``label,youtube_id,time_start,time_end,split``) and videos under ``videos/{split}/``, in class
  folders or flat, named ``{youtube_id}_{start:06d}_{end:06d}.mp4`` (or any name starting with
  the id). Classes are sorted by name, as mmaction2's label map is.
* ``sthv1``: ``something-something-v1-labels.csv`` and ``-train.csv`` / ``-validation.csv``
  (``id;class``), frames in ``20bn-something-something-v1/{id}/{00001}.jpg``.
* ``sthv2``: ``labels/labels.json``, ``labels/train.json`` / ``validation.json``, videos in
  ``20bn-something-something-v2/{id}.webm``.
* ``jester``: like sthv1 with ``jester-v1-*.csv`` and ``20bn-jester-v1/{id}/``.
* ``ucf101``: ``ucfTrainTestlist/classInd.txt``, ``trainlist0N.txt`` / ``testlist0N.txt``,
  videos ``UCF-101/{Class}/{file}.avi``.
* ``hmdb51``: ``testTrainMulti_7030_splits/{class}_test_split{N}.txt`` (``file.avi 1|2|0``:
  train, test, unused), videos ``hmdb51/{class}/{file}.avi``.

Rows whose video is missing are left out and counted, never written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalshift.atomic import write_text_atomic
from temporalshift.data.datasets import sthv2_template_label

Row = tuple[str, int, int | None]


@dataclass
class Layout:
    """What a layout reader found: class names, rows per split, and rows it had to leave out."""

    classes: list[str]
    splits: dict[str, list[Row]]
    missing: dict[str, int] = field(default_factory=dict)
    frames: bool = False  # rows are frame folders (frame lists) rather than video files


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"expected {path} (see `tsm prepare annotations --help` for the layout)")
    return path


def _count_frames(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _kinetics(root: Path, split_id: int) -> Layout:
    ann = _need(root / "annotations")
    tables = {}
    for split in ("train", "val", "test"):
        file = ann / f"{split}.csv"
        if file.exists():
            with open(file, newline="") as f:
                tables[split] = list(csv.DictReader(f))
    if "train" not in tables:
        raise FileNotFoundError(f"expected {ann / 'train.csv'}")
    classes = sorted({row["label"] for row in tables["train"]})
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {})
    for split, rows in tables.items():
        if not rows or "label" not in rows[0]:
            continue  # Kinetics' test.csv has no labels
        videos = {p.name[:11]: p for p in (root / "videos" / split).rglob("*") if p.is_file()}
        out, missing = [], 0
        for row in rows:
            video = videos.get(row["youtube_id"])
            if video is None:
                missing += 1
                continue
            out.append((str(video.relative_to(root)), index[row["label"]], None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _twenty_bn_frames(root: Path, prefix: str, frames_dir: str) -> Layout:
    classes = [c.strip() for c in _need(root / f"{prefix}-labels.csv").read_text().splitlines() if c.strip()]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {}, frames=True)
    for split, name in (("train", "train"), ("val", "validation")):
        file = root / f"{prefix}-{name}.csv"
        if not file.exists():
            continue
        out, missing = [], 0
        for line in file.read_text().splitlines():
            if not line.strip():
                continue
            vid, _, label = line.partition(";")
            folder = root / frames_dir / vid.strip()
            if not folder.is_dir():
                missing += 1
                continue
            out.append((str(folder.relative_to(root)), index[label.strip()], _count_frames(folder)))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _sthv2(root: Path, split_id: int) -> Layout:
    labels = json.loads(_need(root / "labels" / "labels.json").read_text())
    classes = [name for name, _ in sorted(labels.items(), key=lambda kv: int(kv[1]))]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {})
    for split, name in (("train", "train"), ("val", "validation")):
        file = root / "labels" / f"{name}.json"
        if not file.exists():
            continue
        out, missing = [], 0
        for item in json.loads(file.read_text()):
            video = root / "20bn-something-something-v2" / f"{item['id']}.webm"
            if not video.exists():
                missing += 1
                continue
            out.append((str(video.relative_to(root)), index[sthv2_template_label(item["template"])], None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _ucf101(root: Path, split_id: int) -> Layout:
    lists = _need(root / "ucfTrainTestlist")
    classes = [line.split()[1] for line in (lists / "classInd.txt").read_text().splitlines() if line.strip()]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {})
    for split, name in (("train", "trainlist"), ("val", "testlist")):
        out, missing = [], 0
        for line in _need(lists / f"{name}{split_id:02d}.txt").read_text().splitlines():
            if not line.strip():
                continue
            rel = line.split()[0]
            video = root / "UCF-101" / rel
            if not video.exists():
                missing += 1
                continue
            out.append((str(video.relative_to(root)), index[rel.split("/")[0]], None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _hmdb51(root: Path, split_id: int) -> Layout:
    lists = _need(root / "testTrainMulti_7030_splits")
    suffix = f"_test_split{split_id}.txt"
    files = sorted(lists.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no *{suffix} files in {lists}")
    classes = [f.name[: -len(suffix)] for f in files]
    layout = Layout(classes, {"train": [], "val": []}, {"train": 0, "val": 0})
    for label, file in enumerate(files):
        for line in file.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("1", "2"):
                continue  # 0 = not used in this split
            split = "train" if parts[1] == "1" else "val"
            video = root / "hmdb51" / classes[label] / parts[0]
            if not video.exists():
                layout.missing[split] += 1
                continue
            layout.splits[split].append((str(video.relative_to(root)), label, None))
    return layout


# What each reader expects under ROOT (shown by `tsm prepare annotations --help`).
LAYOUT_HELP: dict[str, str] = {
    "kinetics400/600/700": "annotations/{train,val,test}.csv and videos/{train,val,test}/<youtube id>*",
    "sthv1": "something-something-v1-{labels,train,validation}.csv and 20bn-something-something-v1/<id>/ frames",
    "sthv2": "labels/{labels,train,validation}.json and 20bn-something-something-v2/<id>.webm",
    "jester": "jester-v1-{labels,train,validation}.csv and 20bn-jester-v1/<id>/ frames",
    "ucf101": "ucfTrainTestlist/{classInd,trainlistNN,testlistNN}.txt and UCF-101/<class>/<video>.avi",
    "hmdb51": "testTrainMulti_7030_splits/<class>_test_splitN.txt and hmdb51/<class>/<video>.avi",
}

LAYOUTS: dict[str, Callable[[Path, int], Layout]] = {
    "kinetics400": _kinetics,
    "kinetics600": _kinetics,
    "kinetics700": _kinetics,
    "sthv1": lambda root, _: _twenty_bn_frames(root, "something-something-v1", "20bn-something-something-v1"),
    "sthv2": _sthv2,
    "jester": lambda root, _: _twenty_bn_frames(root, "jester-v1", "20bn-jester-v1"),
    "ucf101": _ucf101,
    "hmdb51": _hmdb51,
}


def read_layout(dataset: str, root: str | Path, split_id: int = 1) -> Layout:
    """Read the official layout of ``dataset`` under ``root`` (``split_id``: UCF/HMDB split 1-3)."""
    if dataset not in LAYOUTS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    return LAYOUTS[dataset](root, split_id)


def write_layout(layout: Layout, dataset: str, out_dir: str | Path) -> dict[str, Path]:
    """Write mmaction2-style lists (``{dataset}_{split}_list_{videos|rawframes}.txt``) and the
    label map (``{dataset}_label_map.txt``, one class name per line); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = "rawframes" if layout.frames else "videos"
    written = {}
    for split, rows in layout.splits.items():
        path = out_dir / f"{dataset}_{split}_list_{kind}.txt"
        lines = [f"{p} {n} {label}" if n is not None else f"{p} {label}" for p, label, n in rows]
        write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
        written[split] = path
    label_map = out_dir / f"{dataset}_label_map.txt"
    write_text_atomic(label_map, "\n".join(layout.classes) + "\n")
    written["label_map"] = label_map
    return written
