"""The training loop: one process or many (``torchrun``), AMP, clipping, schedules, resume.

    tsm train tsm_r50_1x1x8_k400 --set data.root=data/k400 data.batch_size=16
    torchrun --nproc_per_node 8 -m temporalshift train tsm_r50_1x1x8_k400 --auto-scale-lr

Every epoch writes ``epoch_NNN.pt`` (model, optimizer, scaler, RNG states, config) atomically,
and ``best.pt`` when validation top-1 improves; ``--resume RUN_DIR`` restarts from the last one.
Data order and augmentation are functions of (seed, epoch, index) and the RNG states are
restored, so a resumed run repeats exactly the epochs an uninterrupted run would have run.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from temporalshift.data.datasets import BadVideoLog
from temporalshift.engine.checkpoint import (
    FORMAT,
    epoch_checkpoints,
    load_training_state,
    prune_checkpoints,
    rng_state,
    save_atomic,
    set_rng_state,
)
from temporalshift.engine.config import Config, save_config
from temporalshift.engine.data import build_loaders, check_labels, ensure_builtin_data
from temporalshift.engine.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    cleanup,
    init_distributed,
    mean_across,
)
from temporalshift.engine.evaluate import _autocast, evaluate
from temporalshift.engine.logs import RunLog, plot_curves
from temporalshift.engine.optim import build_optimizer, lr_factor, set_lr
from temporalshift.models.checkpoints import extract_state_dict, load_weights, read_checkpoint
from temporalshift.models.recognizer import Recognizer
from temporalshift.models.zoo import create_model
from temporalshift.performance import to_channels_last


@dataclass
class TrainResult:
    work_dir: Path
    best_top1: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def build_model(cfg: Config) -> Recognizer:
    """The zoo model the recipe names, with its overrides, partial BN and fine-tuning weights."""
    model = create_model(cfg.model.name, num_classes=cfg.model.num_classes, **cfg.model.overrides)
    model.set_partial_bn(cfg.model.partial_bn)
    if cfg.model.load_from:
        load_for_finetuning(model, cfg.model.load_from)
    return model


def load_for_finetuning(model: Recognizer, path: str) -> None:
    """Load every weight of ``path`` but a classifier of another size, which stays newly initialised."""
    state = extract_state_dict(read_checkpoint(path))
    own = model.state_dict()
    head = [k for k in state if k.startswith("head.fc.") and k in own and state[k].shape != own[k].shape]
    for k in head:
        del state[k]
    misfits = [f"{k} is {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items()
               if k in own and v.shape != own[k].shape]  # fmt: skip
    if misfits:
        raise ValueError(f"{path} does not fit {type(model).__name__} (another width or backbone?): {misfits[0]}"
                         + (f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""))  # fmt: skip
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not (head and k.startswith("head.fc."))]
    if wrong or unexpected:
        raise ValueError(
            f"{path} does not fit {type(model).__name__}: missing {wrong[:5]}, unexpected {unexpected[:5]}"
        )


def _last_readable_state(work_dir: Path) -> dict[str, Any]:
    """The newest epoch checkpoint that reads; a damaged newer one is named and passed over."""
    found = epoch_checkpoints(work_dir)
    if not found:
        raise FileNotFoundError(f"nothing to resume in {work_dir}: no epoch_*.pt checkpoint")
    for i in range(len(found) - 1, -1, -1):
        try:
            return load_training_state(found[i])
        except ValueError as exc:
            then = f"; resuming from {found[i - 1].name} instead" if i else ""
            print(f"warning: {exc}{then}", file=sys.stderr, flush=True)
    raise ValueError(f"no epoch checkpoint in {work_dir} can be read")


# What a resumed run may change: how it runs, not what it learns (and the epochs, to train longer).
RESUMABLE = frozenset({
    "schedule.epochs", "data.workers", "runtime.work_dir", "runtime.threads", "runtime.progress", "runtime.log_every",
    "runtime.tensorboard", "runtime.keep_checkpoints", "runtime.val_every", "runtime.device",
})  # fmt: skip


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "overrides":
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_config(run_dir: str | Path, recipe: str | None = None, overrides: list[str] | None = None) -> Config:
    """The config a run in ``run_dir`` was started with (its ``config.yaml``), with ``overrides``
    of the settings a resumed run may change (:data:`RESUMABLE`); ``recipe`` must name the same model."""
    from temporalshift.engine.config import apply_overrides, load_config

    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: no config.yaml (was a run started there?)")
    cfg = load_config(saved)
    if recipe is not None and (named := load_config(recipe).model.name) != cfg.model.name:
        raise ValueError(f"{run_dir} is a run of {cfg.model.name}, not of {named}")
    fixed = [
        item.partition("=")[0].strip() for item in overrides or [] if item.partition("=")[0].strip() not in RESUMABLE
    ]
    if fixed:
        raise ValueError(
            f"--resume continues {run_dir} as it was started; it cannot change {', '.join(fixed)} "
            f"(only {', '.join(sorted(RESUMABLE))}): train into a new folder to change them"
        )
    return apply_overrides(cfg, overrides or [])


def _check_same_run(cfg: Config, state: dict[str, Any], work_dir: Path) -> None:
    """Refuse to resume a run with settings that change what it learns."""
    if not state.get("config"):
        return
    ours, theirs = _flat(cfg.to_dict()), _flat(state["config"])
    changed = [f"{k} {theirs.get(k)!r} -> {v!r}" for k, v in ours.items() if k not in RESUMABLE and theirs.get(k) != v]
    if changed:
        raise ValueError(
            f"{work_dir} was trained with other settings: {'; '.join(changed[:4])}"
            f"{' ...' if len(changed) > 4 else ''}; resume it with its own config (tsm train RECIPE --resume DIR)"
        )


def _work_dir(cfg: Config) -> Path:
    return Path(cfg.runtime.work_dir.format(model=cfg.model.name))


def _seed_everything(seed: int, deterministic: bool) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def train(cfg: Config, resume: str | Path | None = None, auto_scale_lr: bool = False) -> TrainResult:
    """Train ``cfg`` (optionally resuming the run in ``resume``); returns where it all went."""
    info = init_distributed(cfg.runtime.device)
    try:
        return _train(cfg, info, resume, auto_scale_lr)
    finally:
        cleanup(info)


def _train(cfg: Config, info: DistInfo, resume: str | Path | None, auto_scale_lr: bool) -> TrainResult:
    start_time = time.time()
    rt = cfg.runtime
    if rt.threads:
        torch.set_num_threads(rt.threads)
    if rt.amp == "fp16" and info.device.type != "cuda":
        raise ValueError("runtime.amp=fp16 needs a GPU; use bf16 on the CPU")
    if rt.amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"runtime.amp must be none, bf16 or fp16, got {rt.amp!r}")
    if info.is_main:
        cfg = ensure_builtin_data(cfg)
    barrier(info)
    if not info.is_main:
        cfg = ensure_builtin_data(cfg)  # already generated: just resolves the paths
    work_dir = Path(resume) if resume else _work_dir(cfg)
    state = None
    if resume:
        state = _last_readable_state(work_dir)
        _check_same_run(cfg, state, work_dir)
        if auto_scale_lr and not state.get("auto_scale_lr", auto_scale_lr):
            raise ValueError(f"{work_dir} was trained without --auto-scale-lr: resuming with it would change its lr")
    elif earlier := epoch_checkpoints(work_dir):
        raise ValueError(
            f"{work_dir} already holds a run ({earlier[-1].name}); continue it with "
            f"--resume {work_dir}, or train into another folder (--work-dir)"
        )
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            _clear_unfinished_run(work_dir)
    _seed_everything(rt.seed + info.rank, rt.deterministic)

    # resuming: the weights come from the checkpoint (the fine-tuning source may be gone by now)
    model = build_model(cfg if state is None else replace(cfg, model=replace(cfg.model, load_from=None)))
    spec = model.spec
    frames = cfg.data.sampling
    if frames is not None:
        from temporalshift.data.sampling import SamplingSpec

        per_clip = SamplingSpec.parse(frames).frames_per_clip
        if model.temporal and per_clip != model.num_segments:
            raise ValueError(f"data.sampling {frames} gives {per_clip} frames, the model needs {model.num_segments}")
    model.to(info.device)
    if rt.channels_last:
        to_channels_last(model)  # 2D convs only: a 3D non-local conv has no NHWC form
    barrier(info)  # the work dir exists for every rank from here on
    bad = BadVideoLog(work_dir / "bad_videos.tsv")
    if info.is_main and not resume:
        bad.clear()
    loaders = build_loaders(cfg, spec, info, bad)
    check_labels(model.num_classes, loaders.train_set, loaders.val_set)

    total_batch = cfg.data.batch_size * info.world_size * cfg.optim.accumulate
    lr = cfg.optim.lr * (total_batch / cfg.optim.ref_batch_size if auto_scale_lr else 1.0)
    if state is not None and "base_lr" in state:
        lr = state["base_lr"]  # the run's own (scaled or not), whatever this command line says
        auto_scale_lr = state["auto_scale_lr"]
    optimizer = build_optimizer(model, cfg.optim, lr)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp == "fp16")
    start_epoch, best, history = 0, None, []
    if state is not None:
        load_weights(model, state["model"], source=f"{work_dir} (resumed)")
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, history = state["epoch"] + 1, state["best_top1"], state["history"]
        _restore_rng(state, info)
    if info.is_main:  # only now: a run that cannot start (or resume) leaves its folder's config as it was
        save_config(cfg, work_dir / "config.yaml")
    net: nn.Module = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if rt.compile:
        net = torch.compile(net)

    steps_per_epoch = len(loaders.train)
    log = RunLog(work_dir, enabled=info.is_main, tensorboard=rt.tensorboard,
                 purge_step=start_epoch * steps_per_epoch + 1 if state is not None else None)  # fmt: skip
    if state is not None:
        log.truncate_after(start_epoch)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set ({len(loaders.train_set)} videos) is smaller than one batch "
            f"({cfg.data.batch_size} x {info.world_size} processes)"
        )
    if info.is_main:
        print(
            f"training {cfg.model.name} ({sum(p.numel() for p in model.parameters()):,} params) on "
            f"{len(loaders.train_set)} videos, {info.world_size} process(es) on {info.device}, "
            f"total batch {total_batch}, lr {lr:g}, {cfg.schedule.epochs} epochs -> {work_dir}",
            flush=True,
        )
    last_ckpt = work_dir / "epoch_000.pt"
    for epoch in range(start_epoch, cfg.schedule.epochs):
        record = _train_epoch(net, model, loaders, optimizer, scaler, cfg, info, epoch, lr, steps_per_epoch, log)
        val = None
        if loaders.val is not None and ((epoch + 1) % rt.val_every == 0 or epoch + 1 == cfg.schedule.epochs):
            val = evaluate(
                net, loaders.val, info, model.num_classes, rt.average, rt.amp, rt.progress, desc=f"val {epoch + 1}"
            )
            record.update(val_top1=val.top1, val_top5=val.top5, val_mean_class=val.mean_class_accuracy)
        improved = val is not None and (best is None or val.top1 > best)
        if improved:
            best = val.top1
        record["best_top1"] = best
        history.append(record)
        rngs = all_gather_objects(rng_state(), info)  # each rank's own, for an exact resume
        if info.is_main:
            log.write(record, step=epoch + 1)
            print(_epoch_line(record, cfg.schedule.epochs), flush=True)
            if bad.entries():
                print(bad.summary(), flush=True)
            ckpt = {
                "format": FORMAT,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best_top1": best,
                "history": history,
                "rng": rngs[0],
                "rng_per_rank": rngs,
                "base_lr": lr,
                "auto_scale_lr": auto_scale_lr,
                "config": cfg.to_dict(),
                "model_name": cfg.model.name,
            }
            last_ckpt = work_dir / f"epoch_{epoch + 1:03d}.pt"
            save_atomic(ckpt, last_ckpt)
            if improved:
                save_atomic({k: ckpt[k] for k in ("format", "model", "epoch", "best_top1", "config", "model_name")},
                            work_dir / "best.pt")  # fmt: skip
            prune_checkpoints(work_dir, rt.keep_checkpoints)
        barrier(info)
    if info.is_main:
        log.close()
        changes = ", ".join(f"{k}={v}" for k, v in cfg.model.overrides.items())
        plot_curves(log.path, work_dir / "curves.png", title=cfg.model.name + (f" ({changes})" if changes else ""))
    best_path = work_dir / "best.pt"
    return TrainResult(
        work_dir=work_dir,
        best_top1=best,
        last_checkpoint=last_ckpt,
        best_checkpoint=best_path if best_path.exists() else None,
        history=history,
        seconds=time.time() - start_time,
    )


def _restore_rng(state: dict[str, Any], info: DistInfo) -> None:
    """Each rank's own generator states; a run resumed on another number of processes continues
    from freshly seeded ones (its data shards differ anyway, so it cannot repeat the run exactly)."""
    per_rank = state.get("rng_per_rank") or [state["rng"]]
    if len(per_rank) == info.world_size:
        set_rng_state(per_rank[info.rank])
    elif info.is_main:
        print(f"warning: the run was trained on {len(per_rank)} process(es), this is {info.world_size}: "
              "it continues, but not exactly as it would have", file=sys.stderr, flush=True)  # fmt: skip


def _clear_unfinished_run(work_dir: Path) -> None:
    """Logs of a run that died before its first checkpoint: nothing can resume them, and a new
    run's records would be mixed in."""
    import shutil

    stale = [p for p in (work_dir / "log.jsonl", work_dir / "tensorboard") if p.exists()]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if stale:
        print(f"note: {work_dir} held the logs of a run that saved no checkpoint; they were replaced", flush=True)


def _train_epoch(
    net: nn.Module,
    model: Recognizer,
    loaders,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: Config,
    info: DistInfo,
    epoch: int,
    base_lr: float,
    steps_per_epoch: int,
    log: RunLog,
) -> dict[str, Any]:
    """One pass over the training set; returns the epoch's summary record."""
    rt, accumulate = cfg.runtime, cfg.optim.accumulate
    loaders.train.sampler.set_epoch(epoch)
    loaders.train_set.set_epoch(epoch)
    net.train()
    bar = None
    if rt.progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}", unit="it",
                   dynamic_ncols=True, leave=False)  # fmt: skip
    losses, clips, t0 = [], 0, time.time()
    optimizer.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(loaders.train):
        step = epoch * steps_per_epoch + i
        lr = base_lr * lr_factor(step, steps_per_epoch, cfg.schedule, base_lr)
        set_lr(optimizer, lr)
        x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
        last_micro = (i + 1) % accumulate == 0 or i + 1 == steps_per_epoch
        sync = nullcontext() if last_micro or not info.enabled else net.no_sync()
        with sync:
            with _autocast(info.device, rt.amp):
                loss = F.cross_entropy(net(x), y, label_smoothing=cfg.optim.label_smoothing)
            scaler.scale(loss / accumulate).backward()
        if last_micro:
            if cfg.optim.clip_grad:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"the loss became {value} at epoch {epoch + 1}, step {i}; lower optim.lr?")
        losses.append(value)
        clips += x.shape[0] * info.world_size
        rate = clips / max(time.time() - t0, 1e-9)
        if bar is not None:
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}", refresh=False)
            bar.update(1)
        if rt.log_every and (i + 1) % rt.log_every == 0:
            log.write({"kind": "train", "epoch": epoch, "epoch_float": epoch + (i + 1) / steps_per_epoch,
                       "step": step + 1, "loss": value, "lr": lr, "clips_per_s": rate}, step=step + 1)  # fmt: skip
    if bar is not None:
        bar.close()
    seconds = time.time() - t0
    return {
        "kind": "epoch",
        "epoch": epoch,
        "train_loss": mean_across(float(np.mean(losses)), info),
        "lr": lr,
        "seconds": seconds,
        "clips_per_s": clips / max(seconds, 1e-9),
    }


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch'] + 1}/{epochs}", f"loss {r['train_loss']:.4f}", f"lr {r['lr']:.2e}"]
    if r.get("val_top1") is not None:
        parts.append(f"val top-1 {100 * r['val_top1']:.2f}% top-5 {100 * r['val_top5']:.2f}%")
        parts.append(f"best {100 * r['best_top1']:.2f}%")
    parts.append(f"{r['clips_per_s']:.1f} clips/s, {r['seconds']:.1f} s")
    return "  ".join(parts)
