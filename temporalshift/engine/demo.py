"""``tsm demo``: the paper's central claim in miniature, offline, on two CPU cores.

Generates the built-in moving-digits dataset (classes in time-reversed pairs), trains a small TSM
and the very same network with shifts off (TSN), tests both, and prints their accuracy. TSN sees
the frames of a clip as an unordered set, so it cannot tell a clip from its reversal (~50% at
best); TSM exchanges channels between neighbouring frames and can.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from temporalshift.engine.config import apply_overrides, load_config
from temporalshift.engine.evaluate import run_test
from temporalshift.engine.train import train
from temporalshift.models.complexity import count_flops, count_params
from temporalshift.models.zoo import create_model

VARIANTS = {"tsm": 8, "tsn": 0}  # shift_div: 1/8 each way, or no shift at all
QUICK = ["data.digits_per_class=[40,10,20]", "schedule.epochs=5"]


def run_demo(
    out_dir: str | Path = "runs/demo", quick: bool = False, overrides: list[str] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train and test TSM and TSN on the moving digits; returns their metrics (fractions 0..1)."""
    start = time.time()
    base = load_config("demo_moving_digits", (QUICK if quick else []) + list(overrides or []))
    results: dict[str, Any] = {}
    for name in VARIANTS:  # both folders checked before any training
        _check_replaceable(Path(out_dir) / name)
    for name, shift_div in VARIANTS.items():
        cfg = apply_overrides(
            base,
            [f"model.overrides.shift_div={shift_div}", f"runtime.work_dir={Path(out_dir) / name}",
             f"runtime.progress={progress}"],
        )  # fmt: skip
        print(f"\n== {name.upper()}: {'shift 1/' + str(shift_div) if shift_div else 'no shift'} ==", flush=True)
        _claim(Path(out_dir) / name)
        run = train(cfg)
        checkpoint = run.best_checkpoint or run.last_checkpoint
        test = run_test(cfg, checkpoint)
        size = cfg.data.input_size
        with torch.device("meta"):  # shapes only: counting costs no arithmetic
            model = create_model(cfg.model.name, num_classes=cfg.model.num_classes, **cfg.model.overrides)
            frames = torch.zeros(model.num_segments, 3, size, size)
        results[name] = {
            **test.summary(),
            "val_top1": run.best_top1,
            "train_seconds": round(run.seconds, 1),
            "params": count_params(model),
            "flops": count_flops(model.backbone, frames),
            "checkpoint": str(checkpoint),
        }
    results["wall_seconds"] = round(time.time() - start, 1)
    results["dataset"] = {"name": "moving_digits", "classes": 8, "videos_per_class": base.data.digits_per_class}
    return results


DEMO_MARK = ".tsm-demo-run"  # written into each run folder the demo makes: only those it replaces


def _check_replaceable(work_dir: Path) -> None:
    """A demo starts afresh: an earlier demo run in its folder goes (``tsm train`` refuses a used
    folder instead), but a folder holding anything else (a user's run, other files) is refused."""
    if work_dir.is_dir() and any(work_dir.iterdir()) and not (work_dir / DEMO_MARK).is_file():
        raise ValueError(
            f"{work_dir} holds files that the demo did not make; give the demo another --out (or remove them)"
        )


def _claim(work_dir: Path) -> None:
    """Replace an earlier demo run in ``work_dir`` and mark the folder as the demo's."""
    _check_replaceable(work_dir)
    if work_dir.is_dir():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    (work_dir / DEMO_MARK).write_text("made by `tsm demo`, which replaces this folder on its next run\n")


def format_table(results: dict[str, Any]) -> str:
    rows = [
        ("model", "test top-1", "top-5", "mean class acc", "params", "FLOPs/clip", "train time"),
    ]
    for name in VARIANTS:
        r = results[name]
        rows.append((
            name.upper(),
            f"{100 * r['top1']:.1f}%",
            f"{100 * r['top5']:.1f}%",
            f"{100 * r['mean_class_accuracy']:.1f}%",
            f"{r['params']:,}",
            f"{r['flops'] / 1e6:.0f}M",
            f"{r['train_seconds']:.0f} s",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    tsm, tsn = results["tsm"]["top1"], results["tsn"]["top1"]
    lines.append("")
    lines.append(
        f"Same network, same data, same FLOPs: shifting 1/4 of the channels in time takes test top-1 "
        f"from {100 * tsn:.1f}% (TSN) to {100 * tsm:.1f}% (TSM). Total {results['wall_seconds']:.0f} s."
    )
    return "\n".join(lines)


def main(out_dir: str, quick: bool, as_json: bool, overrides: list[str]) -> dict[str, Any]:
    """CLI body: progress and per-epoch lines go to stderr when stdout is reserved for JSON."""
    redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with redirect:
        return run_demo(out_dir, quick, overrides)
