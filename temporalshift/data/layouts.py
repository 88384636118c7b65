"""Official layouts of the public action datasets -> our annotation lists and label maps.

Each reader takes the dataset's root folder as its publishers ship it and returns the class names
and, per split, ``(path, label, num_frames or None)`` rows. What each expects under ``root``:

* ``kinetics400`` / ``kinetics600`` / ``kinetics700``: ``annotations/{train,val,test}.csv``
  (``label,youtube_id,time_start,time_end,split``) and videos under ``videos/{split}/``, in class
  folders or flat, named ``{youtube_id}_{start:06d}_{end:06d}.mp4`` (or, where the id has one
  video and one row, any video name starting with the id). Classes are sorted by name, as
  mmaction2's label map is.
* ``sthv1``: ``something-something-v1-labels.csv`` and ``-train.csv`` / ``-validation.csv``
  (``id;class``), frames in ``20bn-something-something-v1/{id}/{00001}.jpg``.
* ``sthv2``: ``labels/labels.json``, ``labels/train.json`` / ``validation.json``, videos in
  ``20bn-something-something-v2/{id}.webm``.
* ``jester``: like sthv1 with ``jester-v1-*.csv`` and ``20bn-jester-v1/{id}/``.
* ``ucf101``: ``ucfTrainTestlist/classInd.txt``, ``trainlist0N.txt`` / ``testlist0N.txt``,
  videos ``UCF-101/{Class}/{file}.avi``.
* ``hmdb51``: ``testTrainMulti_7030_splits/{class}_test_split{N}.txt`` (``file.avi 1|2|0``:
  train, test, unused), videos ``hmdb51/{class}/{file}.avi``.

Rows whose video is missing are left out and counted, never written. Symlinked folders are
followed; the annotation files may start with a byte-order mark. UCF-101 and HMDB-51 lists name
their split (``ucf101_train_split_2_list_videos.txt``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalshift.atomic import write_text_atomic
from temporalshift.data.datasets import sthv2_template_label
from temporalshift.data.files import is_video_file, walk_files

Row = tuple[str, int, int | None]


@dataclass
class Layout:
    """What a layout reader found: class names, rows per split, and rows it had to leave out."""

    classes: list[str]
    splits: dict[str, list[Row]]
    missing: dict[str, int] = field(default_factory=dict)
    frames: bool = False  # rows are frame folders (frame lists) rather than video files
    split_id: int | None = None  # the official split the rows come from (UCF-101, HMDB-51)
    frame_template: str | None = None  # how the frame files are named, for frame layouts


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"expected {path} (see `tsm prepare annotations --help` for the layout)")
    return path


def _text(path: Path) -> str:
    """An annotation file's text, without the byte-order mark some editors write."""
    return path.read_text(encoding="utf-8-sig")


def _label(index: dict[str, int], name: str, where: str, names_from: str) -> int:
    """The index of class ``name``; ``where`` (``file:line``) names the row in the error."""
    if name not in index:
        raise ValueError(f"{where}: class {name!r} is not one of the {len(index)} classes of {names_from}")
    return index[name]


def _kinetics_videos(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """The videos under ``folder`` by file stem and by YouTube id (the first 11 characters)."""
    by_stem: dict[str, Path] = {}
    by_id: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in walk_files(folder):
            if is_video_file(path):
                by_stem.setdefault(path.stem, path)
                by_id.setdefault(path.name[:11], []).append(path)
    return by_stem, by_id


def _count_frames(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _kinetics(root: Path, split_id: int) -> Layout:
    ann = _need(root / "annotations")
    tables = {}
    for split in ("train", "val", "test"):
        file = ann / f"{split}.csv"
        if file.exists():
            with open(file, newline="", encoding="utf-8-sig") as f:
                tables[split] = list(csv.DictReader(f))
            needed = {"youtube_id", "time_start", "time_end"} | ({"label"} if split != "test" else set())
            if tables[split] and not needed <= set(tables[split][0]):
                raise ValueError(f"{file}: expected the columns label,youtube_id,time_start,time_end,split")
    if "train" not in tables:
        raise FileNotFoundError(f"expected {ann / 'train.csv'}")
    classes = sorted({row["label"] for row in tables["train"]})
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {})
    for split, rows in tables.items():
        if not rows or "label" not in rows[0]:
            continue  # Kinetics' test.csv has no labels
        by_stem, by_id = _kinetics_videos(root / "videos" / split)
        rows_per_id: dict[str, int] = {}
        for row in rows:
            rows_per_id[row["youtube_id"]] = rows_per_id.get(row["youtube_id"], 0) + 1
        out, missing = [], 0
        for line, row in enumerate(rows, start=2):
            yid = row["youtube_id"]
            try:
                stem = f"{yid}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            except ValueError:
                raise ValueError(f"{ann / f'{split}.csv'}:{line}: time_start and time_end must be seconds") from None
            video = by_stem.get(stem)
            if video is None and rows_per_id[yid] == 1 and len(by_id.get(yid, [])) == 1:
                video = by_id[yid][0]  # a layout that names videos by their id alone
            if video is None:
                missing += 1
                continue
            label = _label(index, row["label"], f"{ann / split}.csv:{line}", "train.csv")
            out.append((str(video.relative_to(root)), label, None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _twenty_bn_frames(root: Path, prefix: str, frames_dir: str) -> Layout:
    labels = _need(root / f"{prefix}-labels.csv")
    classes = [c.strip() for c in _text(labels).splitlines() if c.strip()]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {}, frames=True, frame_template="{:05d}.jpg")  # 00001.jpg...
    for split, name in (("train", "train"), ("val", "validation")):
        file = root / f"{prefix}-{name}.csv"
        if not file.exists():
            continue
        out, missing = [], 0
        for n, line in enumerate(_text(file).splitlines(), start=1):
            if not line.strip():
                continue
            vid, _, label = line.partition(";")
            folder = root / frames_dir / vid.strip()
            frames = _count_frames(folder) if folder.is_dir() else 0
            if not frames:  # no folder, or an empty one
                missing += 1
                continue
            label_index = _label(index, label.strip(), f"{file}:{n}", labels.name)
            out.append((str(folder.relative_to(root)), label_index, frames))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _sthv2(root: Path, split_id: int) -> Layout:
    labels = json.loads(_text(_need(root / "labels" / "labels.json")))
    classes = [name for name, _ in sorted(labels.items(), key=lambda kv: int(kv[1]))]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {})
    for split, name in (("train", "train"), ("val", "validation")):
        file = root / "labels" / f"{name}.json"
        if not file.exists():
            continue
        out, missing = [], 0
        for item in json.loads(_text(file)):
            video = root / "20bn-something-something-v2" / f"{item['id']}.webm"
            if not video.exists():
                missing += 1
                continue
            label = _label(index, sthv2_template_label(item["template"]), f"{file}: video {item['id']}", "labels.json")
            out.append((str(video.relative_to(root)), label, None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _ucf101(root: Path, split_id: int) -> Layout:
    lists = _need(root / "ucfTrainTestlist")
    classes = [line.split()[1] for line in _text(_need(lists / "classInd.txt")).splitlines() if line.strip()]
    index = {c: i for i, c in enumerate(classes)}
    layout = Layout(classes, {}, split_id=split_id)
    for split, name in (("train", "trainlist"), ("val", "testlist")):
        out, missing = [], 0
        file = _need(lists / f"{name}{split_id:02d}.txt")
        for n, line in enumerate(_text(file).splitlines(), start=1):
            if not line.strip():
                continue
            rel = line.split()[0]
            video = root / "UCF-101" / rel
            if not video.exists():
                missing += 1
                continue
            label = _label(index, rel.split("/")[0], f"{file}:{n}", "classInd.txt")
            out.append((str(video.relative_to(root)), label, None))
        layout.splits[split], layout.missing[split] = out, missing
    return layout


def _hmdb51(root: Path, split_id: int) -> Layout:
    lists = _need(root / "testTrainMulti_7030_splits")
    suffix = f"_test_split{split_id}.txt"
    files = sorted(lists.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no *{suffix} files in {lists}")
    classes = [f.name[: -len(suffix)] for f in files]
    layout = Layout(classes, {"train": [], "val": []}, {"train": 0, "val": 0}, split_id=split_id)
    for label, file in enumerate(files):
        for line in _text(file).splitlines():
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
    if dataset in ("ucf101", "hmdb51") and split_id not in (1, 2, 3):
        raise ValueError(f"{dataset} has the official splits 1, 2 and 3, not {split_id}")
    return LAYOUTS[dataset](root, split_id)


def write_layout(layout: Layout, dataset: str, out_dir: str | Path) -> dict[str, Path]:
    """Write mmaction2-style lists (``{dataset}_{split}_list_{videos|rawframes}.txt``, with
    ``_split_N`` after the split for UCF-101/HMDB-51) and the label map (``{dataset}_label_map.txt``,
    one class name per line); returns their paths."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; the lists go into a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = "rawframes" if layout.frames else "videos"
    official = f"_split_{layout.split_id}" if layout.split_id is not None else ""
    written = {}
    for split, rows in layout.splits.items():
        path = out_dir / f"{dataset}_{split}{official}_list_{kind}.txt"
        lines = [f"{p} {n} {label}" if n is not None else f"{p} {label}" for p, label, n in rows]
        write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
        written[split] = path
    label_map = out_dir / f"{dataset}_label_map.txt"
    write_text_atomic(label_map, "\n".join(layout.classes) + "\n")
    written["label_map"] = label_map
    return written
