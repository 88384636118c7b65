"""Finding video files under a folder, as users lay datasets out (symlinked folders included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


def walk_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every file under ``folder``, following symlinked folders (a dataset assembled from links
    to other disks is common; ``Path.rglob`` skips them before Python 3.13), each real folder once
    so that a link loop ends."""
    seen: set[str] = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            path = Path(top, name)
            if path.is_file():
                yield path


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def find_videos(folder: str | os.PathLike[str]) -> list[Path]:
    """Video files under ``folder`` (recursively, through symlinked folders), sorted."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return sorted(p for p in walk_files(folder) if is_video_file(p))
