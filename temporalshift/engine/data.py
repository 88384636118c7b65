"""Datasets and loaders from a config: the zoo entry's protocol unless the recipe says otherwise."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import DataLoader, DistributedSampler

from temporalshift.data.datasets import BadVideoLog, VideoDataset, collate_test, read_annotations, read_label_map
from temporalshift.data.sampling import SamplingSpec
from temporalshift.data.transforms import TestTransform, TrainTransform, flip_label_map
from temporalshift.engine.config import Config
from temporalshift.engine.distributed import DistInfo
from temporalshift.models.hub import cache_dir
from temporalshift.models.zoo import ModelSpec


def ensure_builtin_data(cfg: Config) -> Config:
    """For ``data.dataset: moving_digits``, generate it (once) and point the lists at it."""
    if cfg.data.dataset == "list":
        return cfg
    if cfg.data.dataset != "moving_digits":
        raise ValueError(f"unknown data.dataset {cfg.data.dataset!r}; use 'list' or 'moving_digits'")
    from temporalshift.data.synthetic import MovingDigitsConfig, make_moving_digits

    train, val, test = cfg.data.digits_per_class
    gen = MovingDigitsConfig(train_per_class=train, val_per_class=val, test_per_class=test, seed=cfg.runtime.seed)
    root = Path(cfg.data.root) if cfg.data.root else cache_dir() / f"moving_digits_{train}_{val}_{test}_s{gen.seed}"
    paths = make_moving_digits(root, gen, progress=cfg.runtime.progress)
    data = replace(  # lists the recipe names itself are kept
        cfg.data,
        root=str(root),
        train_list=cfg.data.train_list or str(paths["train"]),
        val_list=cfg.data.val_list or str(paths["val"]),
        test_list=cfg.data.test_list or str(paths["test"]),
        label_map=cfg.data.label_map or str(paths["classes"]),
    )
    return replace(cfg, data=data)


def _list_path(cfg: Config, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() or not cfg.data.root else Path(cfg.data.root) / path


def class_names(cfg: Config) -> list[str] | None:
    return read_label_map(_list_path(cfg, cfg.data.label_map)) if cfg.data.label_map else None


def sampling_spec(cfg: Config, spec: ModelSpec, test: bool = False) -> SamplingSpec:
    """Train or test sampling: the recipe's if it sets one, else the zoo entry's protocol."""
    text = cfg.data.sampling or (f"{'dense-' if spec.sampling == 'dense' else ''}1x1x{spec.num_segments}")
    if not test:
        return SamplingSpec.parse(text)
    clips = cfg.data.test_clips if cfg.data.test_clips is not None else spec.test_clips
    twice = cfg.data.twice_sample if cfg.data.twice_sample is not None else spec.twice_sample
    return SamplingSpec.parse(text, test_clips=clips, twice_sample=twice)


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader | None
    train_set: VideoDataset
    val_set: VideoDataset | None
    bad: BadVideoLog


def _records(cfg: Config, which: str):
    name = getattr(cfg.data, f"{which}_list")
    if not name:
        raise ValueError(f"data.{which}_list is not set")
    return read_annotations(_list_path(cfg, name), cfg.data.root or None)


def build_loaders(cfg: Config, spec: ModelSpec, info: DistInfo, bad: BadVideoLog) -> Loaders:
    """Training and validation loaders (validation: one clip, ``data.val_crops``)."""
    d = cfg.data
    flips: dict[int, int] = {}
    if d.flip_label_pairs:
        names = class_names(cfg)
        if names is None:
            raise ValueError("data.flip_label_pairs needs data.label_map (class names)")
        flips = flip_label_map(names)
    train_tf = TrainTransform(
        size=d.input_size, crop=d.train_crop, scales=tuple(d.scales), resize_short=d.resize_short,
        flip=d.flip, flip_labels=flips, mean=spec.mean, std=spec.std,
    )  # fmt: skip
    common = {"backend": d.backend, "frame_template": d.frame_template, "seed": cfg.runtime.seed, "bad_log": bad}
    train_set = VideoDataset(_records(cfg, "train"), sampling_spec(cfg, spec), train_tf, **common)
    sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.runtime.seed, drop_last=True
    )
    kw = {"num_workers": d.workers, "pin_memory": info.device.type == "cuda", "persistent_workers": d.workers > 0}
    train = DataLoader(train_set, batch_size=d.batch_size, sampler=sampler, drop_last=True, **kw)
    val_loader = val_set = None
    if d.val_list:
        val_bad = BadVideoLog(Path(bad.path).with_name(Path(bad.path).stem + "_val.tsv"))
        val_set = build_test_set(cfg, spec, list_name="val", clips=1, twice=False, crops=d.val_crops, bad=val_bad)
        val_loader = test_loader(val_set, cfg, info)
    return Loaders(train, val_loader, train_set, val_set, bad)


def check_labels(num_classes: int, *datasets: VideoDataset | None) -> None:
    """Refuse annotations whose labels the model has no class for, before any work is done."""
    top = max((max(d.labels()) for d in datasets if d is not None and len(d)), default=-1)
    if top >= num_classes:
        raise ValueError(
            f"the annotations use labels up to {top}, but the model has {num_classes} classes; set model.num_classes"
        )


def build_test_set(
    cfg: Config,
    spec: ModelSpec,
    list_name: str = "test",
    clips: int | None = None,
    twice: bool | None = None,
    crops: str | None = None,
    bad: BadVideoLog | None = None,
) -> VideoDataset:
    """The test protocol's dataset (arguments override the recipe, which overrides the zoo)."""
    d = cfg.data
    sampling = sampling_spec(cfg, spec, test=True)
    sampling = replace(
        sampling,
        test_clips=clips if clips is not None else sampling.test_clips,
        twice_sample=twice if twice is not None else sampling.twice_sample,
    )
    crops = crops or d.test_crops or spec.test_crops
    transform = TestTransform(size=d.input_size, resize_short=d.resize_short, crops=crops, mean=spec.mean, std=spec.std)
    return VideoDataset(
        _records(cfg, list_name), sampling, transform, backend=d.backend, frame_template=d.frame_template,
        seed=cfg.runtime.seed, bad_log=bad,
    )  # fmt: skip


def test_loader(dataset: VideoDataset, cfg: Config, info: DistInfo, batch_size: int | None = None) -> DataLoader:
    """Every rank gets a shard (padded to equal size; the evaluation drops the duplicates)."""
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=False)
    if getattr(dataset.transform, "crops", None) == "full":  # whole frames: videos' shapes differ
        batch_size = 1
    return DataLoader(
        dataset,
        batch_size=batch_size or max(cfg.data.batch_size // 2, 1),
        sampler=sampler,
        num_workers=cfg.data.workers,
        collate_fn=collate_test,
        pin_memory=info.device.type == "cuda",
    )
