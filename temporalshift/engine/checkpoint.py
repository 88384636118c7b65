"""Training checkpoints: written atomically, read with ``weights_only=True``, RNG included."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from temporalshift.atomic import atomic_path

FORMAT = "temporalshift/1"
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt$")


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename onto ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError of its zip writer
        free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.is_dir() else None
        space = f"; {free / 2**20:.0f} MB free there" if free is not None else ""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write failed"
        raise OSError(f"could not write {path} ({reason}{space}); the previous file, if any, is intact") from None


def rng_state() -> dict[str, Any]:
    """Every random generator a training step touches, as plain tensors/tuples (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic` (refuses anything that is not plain data)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated or damaged: torch raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = first.split(". ")[0] if first else "damaged"  # torch's first sentence names the damage
        raise ValueError(f"{path} cannot be read ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a temporalshift training checkpoint")
    return state


def epoch_checkpoints(work_dir: str | os.PathLike[str]) -> list[Path]:
    """``epoch_NNN.pt`` files of a run, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(work_dir).glob("epoch_*.pt") if (m := _EPOCH_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(work_dir: str | os.PathLike[str], keep: int) -> None:
    for old in epoch_checkpoints(work_dir)[:-keep] if keep > 0 else []:
        old.unlink()
