"""Writing a file so that it is either all there or not there: never half of one, never a stray temp."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process's umask (read without changing it where Linux shows it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(tmp: Path, target: Path, folder: bool = False) -> None:
    """Give a temporary file or folder the permissions ``target`` would get if written directly:
    the mode of the file it replaces, else the umask's default (temporary names are made private,
    0600 / 0700, which would otherwise lock other users out of a shared dataset)."""
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else (0o777 if folder else 0o666) & ~_umask()
        os.chmod(tmp, mode)
    except OSError:  # a file system without modes (e.g. some network mounts): keep what it gave
        pass


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed onto ``path`` when the block ends
    without an error and removed when it fails (an interrupted export or a full disk leaves the old
    file, if any, and nothing else). ``path``'s folder is made if needed. The temporary name is
    unique (two writers never share one) and keeps ``path``'s suffix, for writers that choose the
    format by it (video encoders, matplotlib). The file ends with the permissions a direct write
    would give it.

    >>> with tempfile.TemporaryDirectory() as d, atomic_path(Path(d) / "new" / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        publish_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``Path(path).write_text(text)``, whole or not at all (lists, label maps, logs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
