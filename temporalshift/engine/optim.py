"""The TSN/TSM optimiser recipe: parameter groups and a learning-rate schedule as pure functions."""

from __future__ import annotations

import math

import torch
from torch import nn

from temporalshift.engine.config import OptimConfig, ScheduleConfig

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """SGD groups of the published recipe.

    * conv/linear weights: weight decay;
    * biases: no weight decay (ever); norm-layer weights: decay only if ``cfg.decay_norm``;
    * the classifier (``head.fc``): lr x ``fc_lr_mult`` (weight), x ``fc_bias_lr_mult`` (bias).

    Frozen parameters (partial BN) are left out. Each group carries ``name`` and ``lr_mult``.
    """
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    buckets: dict[str, list[nn.Parameter]] = {k: [] for k in ("weight", "bias", "norm", "fc_weight", "fc_bias")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        short = name.removeprefix("module.").removeprefix("_orig_mod.")
        if short.startswith("head.fc."):
            buckets["fc_weight" if short.endswith("weight") else "fc_bias"].append(p)
        elif id(p) in norm_params:
            buckets["norm"].append(p)
        elif short.endswith("bias"):
            buckets["bias"].append(p)
        else:
            buckets["weight"].append(p)
    wd = cfg.weight_decay
    settings = {
        "weight": (1.0, wd),
        "bias": (1.0, 0.0),
        "norm": (1.0, wd if cfg.decay_norm else 0.0),
        "fc_weight": (cfg.fc_lr_mult, wd),
        "fc_bias": (cfg.fc_bias_lr_mult, 0.0),
    }
    return [
        {"params": params, "name": key, "lr_mult": settings[key][0], "weight_decay": settings[key][1]}
        for key, params in buckets.items()
        if params
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.SGD:
    groups = param_groups(model, cfg)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_factor(step: int, steps_per_epoch: int, cfg: ScheduleConfig, base_lr: float) -> float:
    """Multiplier of the base lr at iteration ``step`` (linear warm-up, then step or cosine decay).

    >>> cfg = ScheduleConfig(epochs=50, milestones=[20, 40])
    >>> [lr_factor(e * 100, 100, cfg, 0.01) for e in (0, 19, 20, 45)]
    [1.0, 1.0, 0.1, 0.010000000000000002]
    """
    epoch = step / steps_per_epoch
    warm = cfg.warmup_epochs
    if warm > 0 and epoch < warm:
        return cfg.warmup_factor + (1 - cfg.warmup_factor) * epoch / warm
    if cfg.policy == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.policy == "cosine":
        span = max(cfg.epochs - warm, 1e-9)
        progress = min(max((epoch - warm) / span, 0.0), 1.0)
        floor = cfg.min_lr / base_lr if base_lr else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr policy {cfg.policy!r}; use 'step' or 'cosine'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
