"""Test protocols (clips x crops, scores averaged over views) and the metrics of the model zoos."""

from __future__ import annotations

import json
import os
import pickle
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from temporalshift.atomic import atomic_path
from temporalshift.data.datasets import VideoDataset
from temporalshift.engine.distributed import DistInfo, all_gather_objects


@dataclass
class EvalResult:
    """Per-video scores and the metrics computed from them (accuracies are fractions in 0..1)."""

    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: list[float | None]
    confusion: list[list[int]]
    num_videos: int
    num_views: int
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    indices: np.ndarray = field(repr=False)
    skipped: dict[str, str] = field(default_factory=dict)
    dump_error: str | None = None  # why run_test's --dump could not be written (the results stand)

    def summary(self) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "num_videos": self.num_videos,
            "views_per_video": self.num_views,
            "skipped": len(self.skipped),
        }


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of videos whose label is among the ``k`` best scores.

    >>> topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), 1)
    0.5
    """
    if len(labels) == 0:
        return 0.0
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([label in row for row, label in zip(top, labels, strict=True)]))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    conf = confusion_matrix(scores.argmax(1), labels, num_classes) if len(labels) else np.zeros((num_classes,) * 2)
    totals = conf.sum(1)
    per_class = [float(conf[c, c] / totals[c]) if totals[c] else None for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": float(np.mean(present)) if present else 0.0,
        "per_class_accuracy": per_class,
        "confusion": conf.astype(int).tolist(),
    }


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    info: DistInfo,
    num_classes: int,
    average: str = "prob",
    amp: str = "none",
    progress: bool = False,
    desc: str = "testing",
) -> EvalResult:
    """Score every video of ``loader`` (items from :func:`collate_test`), averaging over views.

    ``average="prob"`` averages softmax probabilities over a video's clips x crops (mmaction2's
    ``average_clips='prob'``); ``"score"`` averages logits. Under ``torchrun`` every rank scores
    its shard and the results are gathered (the sampler's padding duplicates are dropped).
    """
    was_training = model.training
    model.eval()
    scores, labels, indices = [], [], []
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=desc, unit="batch", dynamic_ncols=True, leave=False)
    views_per_video = 0
    for batch in loader:
        if bar is not None:
            bar.update(1)
        if batch is None:  # every video of the batch was unreadable
            continue
        views, y, idx = batch
        b, v = views.shape[:2]
        views_per_video = v
        with _autocast(info.device, amp):
            logits = model(views.flatten(0, 1).to(info.device, non_blocking=True)).float()
        per_view = logits.softmax(-1) if average == "prob" else logits
        scores.append(per_view.view(b, v, -1).mean(1).cpu())
        labels.append(y)
        indices.append(idx)
    if bar is not None:
        bar.close()
    model.train(was_training)
    local = (
        torch.cat(scores).numpy() if scores else np.zeros((0, num_classes), np.float32),
        torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
        torch.cat(indices).numpy() if indices else np.zeros(0, np.int64),
    )
    parts = all_gather_objects(local, info)
    all_scores = np.concatenate([p[0] for p in parts])
    all_labels = np.concatenate([p[1] for p in parts])
    all_idx = np.concatenate([p[2] for p in parts])
    _, first = np.unique(all_idx, return_index=True)  # drop the DistributedSampler's padding
    all_scores, all_labels, all_idx = all_scores[first], all_labels[first], all_idx[first]
    dataset = loader.dataset
    skipped = dataset.bad.entries() if isinstance(dataset, VideoDataset) else {}
    m = metrics(all_scores, all_labels, num_classes)
    return EvalResult(
        num_videos=len(all_labels),
        num_views=max(all_gather_objects(views_per_video, info)),
        scores=all_scores,
        labels=all_labels,
        indices=all_idx,
        skipped=skipped,
        **m,
    )


def check_dump_path(path: Path) -> None:
    """Refuse a --dump name that cannot take the results, before the evaluation runs."""
    if path.suffix.lower() not in (".pkl", ".json"):
        raise ValueError(f"--dump must end in .json or .pkl, got {path.name}")
    if path.is_dir():
        raise ValueError(f"--dump {path} is a folder; name a .json or .pkl file")
    folder = next((p for p in path.absolute().parents if p.exists()), None)  # the folder, or what will hold it
    if folder is not None and not os.access(folder, os.W_OK):
        raise ValueError(f"--dump {path} cannot be written: {folder} is not writable")


def dump_results(
    result: EvalResult, path: str | os.PathLike[str], dataset: VideoDataset | None, classes: list[str] | None
) -> Path:
    """Per-video scores and the metrics, as ``.json`` or ``.pkl`` (chosen by the suffix)."""
    path = Path(path)
    videos = []
    for i, label, score in zip(result.indices, result.labels, result.scores, strict=True):
        item = {"index": int(i), "label": int(label), "pred": int(score.argmax()), "scores": score.tolist()}
        if dataset is not None:
            item["video"] = dataset.records[int(i)].path
        videos.append(item)
    payload = {
        **result.summary(),
        "per_class_accuracy": result.per_class_accuracy,
        "confusion": result.confusion,
        "classes": classes,
        "skipped_videos": result.skipped,
        "videos": videos,
    }
    check_dump_path(path)
    with atomic_path(path) as tmp:  # the folder is made if needed: the evaluation is never lost to it
        if path.suffix.lower() == ".pkl":
            with open(tmp, "wb") as f:
                pickle.dump(payload, f)
        else:
            tmp.write_text(json.dumps(payload))
    return path


def run_test(
    cfg,
    checkpoint: str | os.PathLike[str],
    clips: int | None = None,
    crops: str | None = None,
    twice: bool | None = None,
    dump: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """``tsm test``: the test protocol of ``cfg`` (or the given views) on its test list."""
    from temporalshift.data.datasets import BadVideoLog
    from temporalshift.engine.data import build_test_set, check_labels, class_names, ensure_builtin_data, test_loader
    from temporalshift.engine.distributed import cleanup, init_distributed
    from temporalshift.models.zoo import create_model

    if dump is not None:  # a bad --dump is refused before the evaluation, not after it
        check_dump_path(Path(dump))
        Path(dump).parent.mkdir(parents=True, exist_ok=True)
    info = init_distributed(cfg.runtime.device)
    try:
        cfg = ensure_builtin_data(cfg)
        model = create_model(cfg.model.name, num_classes=cfg.model.num_classes, checkpoint=checkpoint,
                             **cfg.model.overrides)  # fmt: skip
        model.to(info.device)
        dataset = build_test_set(cfg, model.spec, "test", clips, twice, crops, BadVideoLog())
        check_labels(model.num_classes, dataset)
        loader = test_loader(dataset, cfg, info)
        result = evaluate(
            model, loader, info, model.num_classes, cfg.runtime.average, cfg.runtime.amp, cfg.runtime.progress
        )
        if dump and info.is_main:
            try:  # a full disk now must not cost the evaluation: the caller reports both
                dump_results(result, dump, dataset, class_names(cfg))
            except OSError as exc:
                result.dump_error = f"the per-video scores could not be written to {dump} ({exc.strerror or exc})"
        return result
    finally:
        cleanup(info)
