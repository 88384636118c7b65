"""What a run writes besides checkpoints: JSON-lines, TensorBoard, and a PNG of its curves."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from temporalshift.atomic import atomic_path, write_text_atomic

log = logging.getLogger("temporalshift.engine")


class RunLog:
    """Appends records to ``log.jsonl`` and mirrors scalars to TensorBoard (main process only)."""

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        enabled: bool = True,
        tensorboard: bool = True,
        purge_step: int | None = None,
    ) -> None:
        """``purge_step``: on resume, the first step to log again (TensorBoard drops what an
        interrupted run logged from there on, so no step appears twice)."""
        self.path = Path(work_dir) / "log.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(work_dir) / "tensorboard"), purge_step=purge_step)
            except ImportError:
                log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None and step is not None:
            kind = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop records of epochs that did not finish, so the curve continues cleanly."""
        if not self.enabled or not self.path.exists():
            return
        keep = [line for line, record in _records(self.path) if record.get("epoch", 0) < epoch]
        write_text_atomic(self.path, "".join(line + "\n" for line in keep))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` of every whole record; a line torn by a crash mid-append (or blank) is left out."""
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((line, record))
    return out


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [record for _, record in _records(Path(path))]


def plot_curves(log_path: str | os.PathLike[str], png_path: str | os.PathLike[str], title: str = "") -> Path | None:
    """Training loss (per logged step and per epoch) and validation accuracy, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no curves.png (pip install matplotlib)")
        return None
    records = read_log(log_path)
    steps = [r for r in records if r.get("kind") == "train"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        ax_loss.plot(
            [r["epoch_float"] for r in steps], [r["loss"] for r in steps], alpha=0.4, label="train loss (steps)"
        )
    if epochs:
        ax_loss.plot(
            [r["epoch"] + 1 for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train loss (epoch)"
        )
        with_val = [r for r in epochs if r.get("val_top1") is not None]
        ax_acc.plot(
            [r["epoch"] + 1 for r in with_val], [100 * r["val_top1"] for r in with_val], "o-", label="val top-1"
        )
        ax_acc.plot(
            [r["epoch"] + 1 for r in with_val], [100 * r["val_top5"] for r in with_val], "s--", label="val top-5"
        )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return png_path
