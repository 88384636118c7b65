"""Typed training/testing configs: dataclasses <-> YAML, with ``--set a.b=value`` overrides.

A config names a zoo model (``model.name``) instead of restating its architecture; the recipe
(data, optimisation, schedule, runtime) is what the YAML adds. Values are checked against the
field types (never ``eval``'d); an unknown key is an error that names it and suggests the
closest known one. The resolved config is saved beside every run (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from temporalshift.atomic import atomic_path
from temporalshift.data.decode import BACKENDS
from temporalshift.data.transforms import TEST_CROPS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ModelConfig:
    """Which zoo model, with which changes (any ModelSpec field goes in ``overrides``)."""

    name: str = "tsm_r50_1x1x8_k400"
    num_classes: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    partial_bn: bool = False
    load_from: str | None = None  # fine-tune from a checkpoint; a new classifier if sizes differ


@dataclass
class DataConfig:
    """Where the videos are and how clips are made (sampling, augmentation, test views)."""

    dataset: str = "list"  # "list" (annotation files) | "moving_digits" (built-in, generated)
    root: str = ""
    train_list: str = ""
    val_list: str = ""
    test_list: str = ""
    label_map: str | None = None
    # Sampling and test views default to the zoo entry's published protocol (one source of truth).
    sampling: str | None = None  # "AxBxN" (segments) or "dense-AxBxN"
    test_clips: int | None = None
    twice_sample: bool | None = None
    input_size: int = 224
    resize_short: int | None = 256
    train_crop: str = "multiscale"
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    flip: float = 0.5
    flip_label_pairs: bool = False  # swap "left"/"right" classes on flip (Something-Something)
    val_crops: str = "center"  # validation during training: 1 clip, this crop
    test_crops: str | None = None
    batch_size: int = 8  # per process
    workers: int = 4
    backend: str = "pyav"
    frame_template: str = "img_{:05d}.jpg"
    digits_per_class: list[int] = field(default_factory=lambda: [100, 20, 40])  # moving_digits only


@dataclass
class OptimConfig:
    """SGD with the TSN/TSM parameter groups."""

    lr: float = 0.01
    ref_batch_size: int = 64  # the total batch ``lr`` was set for (``--auto-scale-lr``)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm: bool = False  # no weight decay on biases ever; on norm layers only if True
    fc_lr_mult: float = 5.0
    fc_bias_lr_mult: float = 10.0
    clip_grad: float | None = 20.0
    accumulate: int = 1
    label_smoothing: float = 0.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over epochs; applied every iteration."""

    epochs: int = 50
    policy: str = "step"  # "step" | "cosine"
    milestones: list[int] = field(default_factory=lambda: [20, 40])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.1
    min_lr: float = 0.0


@dataclass
class RuntimeConfig:
    """Everything about how a run executes rather than what it learns."""

    work_dir: str = "runs/{model}"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    amp: str = "none"  # "none" | "bf16" | "fp16"
    compile: bool = False
    channels_last: bool = False
    threads: int | None = None
    val_every: int = 1
    log_every: int = 10
    keep_checkpoints: int = 2
    average: str = "prob"  # how test views are averaged: "prob" (softmax) or "score"
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML (or ``--set``) value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip("[]").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is Any:
        return value
    if value is None:  # an empty ``--set key=``: nothing, for a text field (e.g. no validation list)
        if tp is str:
            return ""
        raise ValueError(f"{where}: expected {tp.__name__}, got nothing")
    try:
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return tp(value) if not isinstance(value, tp) or tp is float else value
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}") from None


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in (data or {}).items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ValueError(f"unknown config key {path!r}{_suggest(key, names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(tp, value, path)
        else:
            kwargs[key] = _convert(value, tp, path)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from nested dicts, checking every key, type and range."""
    cfg = _build(Config, data, "")
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: Config) -> None:
    """Values that would only fail (or do nothing) deep inside a run: refused before it starts."""
    at_least_one = {
        "schedule.epochs": cfg.schedule.epochs,
        "data.batch_size": cfg.data.batch_size,
        "optim.accumulate": cfg.optim.accumulate,
        "runtime.val_every": cfg.runtime.val_every,
        "runtime.log_every": cfg.runtime.log_every,
        "data.input_size": cfg.data.input_size,
    }
    for key, value in at_least_one.items():
        if value < 1:
            raise ValueError(f"{key} must be at least 1, got {value}")
    if not math.isfinite(cfg.optim.lr) or cfg.optim.lr <= 0:
        raise ValueError(f"optim.lr must be a positive number, got {cfg.optim.lr}")
    if cfg.schedule.policy not in ("step", "cosine"):
        raise ValueError(f"schedule.policy must be 'step' or 'cosine', got {cfg.schedule.policy!r}")
    if not cfg.data.scales or any(not 0 < s <= 1 for s in cfg.data.scales):
        raise ValueError(f"data.scales must be a non-empty list of crop fractions in (0, 1], got {cfg.data.scales}")
    if cfg.data.workers < 0:
        raise ValueError(f"data.workers must be 0 or more, got {cfg.data.workers}")
    o, sch, d, rt = cfg.optim, cfg.schedule, cfg.data, cfg.runtime
    at_least = {  # (value, lowest allowed): a negative one would turn training upside down silently
        "optim.ref_batch_size": (o.ref_batch_size, 1), "optim.weight_decay": (o.weight_decay, 0),
        "optim.fc_lr_mult": (o.fc_lr_mult, 0), "optim.fc_bias_lr_mult": (o.fc_bias_lr_mult, 0),
        "optim.clip_grad": (o.clip_grad, 0), "schedule.warmup_epochs": (sch.warmup_epochs, 0),
        "schedule.min_lr": (sch.min_lr, 0), "runtime.threads": (rt.threads, 1),
        "runtime.keep_checkpoints": (rt.keep_checkpoints, 0), "data.resize_short": (d.resize_short, 1),
    }  # fmt: skip
    for key, (value, low) in at_least.items():
        if value is not None and not value >= low:
            raise ValueError(f"{key} must be at least {low}, got {value}")
    within = {  # (value, low, high, high included)
        "optim.momentum": (o.momentum, 0, 1, False), "optim.label_smoothing": (o.label_smoothing, 0, 1, False),
        "data.flip": (d.flip, 0, 1, True), "schedule.warmup_factor": (sch.warmup_factor, 0, 1, True),
    }  # fmt: skip
    for key, (value, low, high, closed) in within.items():
        if not (low <= value <= high if closed else low <= value < high):
            raise ValueError(f"{key} must be in [{low}, {high}{']' if closed else ')'}, got {value}")
    if not sch.gamma > 0:
        raise ValueError(f"schedule.gamma must be above 0 (the factor at each milestone), got {sch.gamma}")
    choices = {
        "runtime.device": (rt.device, ("auto", "cpu", "cuda")), "runtime.amp": (rt.amp, ("none", "bf16", "fp16")),
        "runtime.average": (rt.average, ("prob", "score")),
        "data.train_crop": (d.train_crop, ("multiscale", "random_resized", "center")),
        "data.val_crops": (d.val_crops, TEST_CROPS), "data.test_crops": (d.test_crops, (None, *TEST_CROPS)),
        "data.backend": (d.backend, BACKENDS), "data.dataset": (d.dataset, ("list", "moving_digits")),
    }  # fmt: skip
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            shown = ", ".join(a for a in allowed if a is not None)
            raise ValueError(f"{key} must be one of {shown}, got {value!r}")


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A YAML path, or the name of a bundled recipe (``tsm_r50_1x1x8_k400``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{Path(name_or_path).stem}.yaml"
    if bundled.is_file():
        return bundled
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(
        f"no config file {name_or_path}{_suggest(str(path.stem), known)} (bundled: {', '.join(known)})"
    )


def load_config(name_or_path: str | os.PathLike[str], overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (a path or a bundled name) and apply ``key.sub=value`` overrides.

    >>> cfg = load_config("tsm_r50_1x1x8_k400", ["optim.lr=0.005", "data.batch_size=4"])
    >>> (cfg.optim.lr, cfg.data.batch_size, cfg.model.name)
    (0.005, 4, 'tsm_r50_1x1x8_k400')
    """
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config is a mapping of sections, got {type(data).__name__}")
    return apply_overrides(config_from_dict(data), overrides or [])


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: what is wrong, and where."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed by the field's type."""
    data = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                options = list(node) if isinstance(node, dict) else []
                raise ValueError(f"unknown config key {'.'.join(parts[: i + 1])!r}{_suggest(part, options)}")
            node = node[part]
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {key!r}: {'.'.join(parts[:-1])} is not a section")
        if parts[-1] not in node and not (len(parts) >= 3 and parts[-2] == "overrides"):
            raise ValueError(f"unknown config key {key!r}{_suggest(parts[-1], list(node))}")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None  # typed again by config_from_dict
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: {raw!r} is not a valid value ({_yaml_problem(exc)})") from None
    return config_from_dict(data)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved config atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(cfg.to_yaml())
