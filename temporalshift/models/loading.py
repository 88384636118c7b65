"""``load_checkpoint``: recognise a file's ecosystem, rebuild or check the model, load strictly.

Our own files carry the zoo name and overrides, so they rebuild the model alone. For the
authors', mmaction2's and PaddleVideo's files the architecture comes from the keys (backbone,
depth, width, classes, non-local blocks, which blocks are shifted, temporal pooling) and from the
file name where the publishers encoded the rest (segments, shift fraction, non-local mode).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from temporalshift.models.checkpoints import FORMAT, extract_state_dict, load_weights, read_checkpoint
from temporalshift.models.foreign import convert, hints_from_filename, infer_architecture
from temporalshift.models.recognizer import Recognizer

# Spec fields a file can tell us, and the zoo entry we start from for each backbone family.
_ARCH_FIELDS = ("backbone", "width", "num_classes", "num_segments", "shift_div", "shift_place", "shift_every",
                "shift_direction", "temporal_pool", "non_local", "sampling")  # fmt: skip


@dataclass
class Recognised:
    """A checkpoint file understood: its layout, our state dict, and the model it needs."""

    path: Path
    layout: str
    state_dict: dict[str, Tensor]
    model_name: str
    overrides: dict[str, Any]
    notes: list[str]
    # what the file does not say and we had to assume (load_checkpoint warns about each)
    assumptions: list[str] = dataclasses.field(default_factory=list)
    exact: bool = False  # our own file: model_name and overrides are what it was built as

    def describe(self) -> str:
        changes = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.layout} checkpoint -> {self.model_name}" + (f" ({changes})" if changes else "")


def _pick_zoo_entry(arch: dict[str, Any], filename: str) -> str:
    from temporalshift.models.zoo import ZOO

    for name, spec in ZOO.items():  # the publisher's own file: its zoo row
        if spec.weights and spec.weights.url.rsplit("/", 1)[-1] == filename:
            return name
    backbone = arch.get("backbone", "resnet50")
    candidates = [
        n for n, s in ZOO.items() if s.backbone == backbone and (s.non_local or None) == arch.get("non_local")
    ]
    if not candidates:
        family = "mobilenetv2" if backbone == "mobilenetv2" else "mobileone" if "mobileone" in backbone else "r50"
        candidates = [n for n in ZOO if family in n and "_nl_" not in n] or ["tsm_r50_1x1x8_k400"]
    shift = arch.get("shift_div", 8) != 0
    dataset = arch.get("dataset", "kinetics400" if arch.get("num_classes") == 400 else None)

    def score(name: str) -> tuple:
        s = ZOO[name]
        return (
            s.is_tsn != (not shift),
            dataset is not None and s.labels != dataset,
            s.num_segments != arch.get("num_segments", 8),  # unsaid: the zoo's usual 8
            s.shift_direction != arch.get("shift_direction", "bidirectional"),
            s.num_classes != arch.get("num_classes", s.num_classes),
            name,
        )

    return min(candidates, key=score)


def recognise(path: str | os.PathLike[str]) -> Recognised:
    """Read ``path`` (never executing code) and work out which of our models it fits."""
    path = Path(path)
    obj = read_checkpoint(path)
    if obj.get("format") == FORMAT and "model_name" in obj:
        overrides = dict(obj.get("overrides") or {})
        config = obj.get("config")
        if config and not overrides:
            overrides = dict(config["model"].get("overrides") or {})
            if config["model"].get("num_classes") is not None:
                overrides["num_classes"] = config["model"]["num_classes"]
        sd = extract_state_dict(obj)
        return Recognised(path, "temporalshift", sd, obj["model_name"], overrides, [], exact=True)
    converted = convert(extract_state_dict(obj))
    if converted.layout == "temporalshift":
        arch = infer_architecture(converted.state_dict)
    else:
        arch = {**infer_architecture(converted.state_dict), **converted.arch}
    hints = hints_from_filename(path.name)
    named_mode = hints.pop("non_local", None)
    arch.update(hints)
    if arch.get("non_local") == "embedded_gaussian" and named_mode == "dot_product":
        arch["non_local"] = "dot_product"  # same keys as embedded gaussian: only the name tells
    if converted.layout == "paddlevideo":
        arch.setdefault("shift_div", arch.get("num_segments", 8))  # PaddleVideo shifts 1/num_segments
    name = _pick_zoo_entry(arch, path.name)
    from temporalshift.models.zoo import ZOO

    spec = ZOO[name]
    if "shift_every" in arch:  # only worth saying when it differs from the backbone's default
        from temporalshift.models.backbones.resnet import RESNET_DEPTHS

        depth = int(arch.get("backbone", spec.backbone).removeprefix("resnet") or 50)
        default = 2 if RESNET_DEPTHS.get(depth, ("", (0, 0, 0, 0)))[1][2] >= 23 else 1
        if arch["shift_every"] == default and spec.shift_every is None:
            del arch["shift_every"]
    overrides = {
        k: arch[k]
        for k in _ARCH_FIELDS
        if k in arch and getattr(spec, k) != arch[k] and not (k == "width" and arch[k] == 64)
    }
    if overrides.get("sampling") == "dense" and spec.twice_sample:  # the dense protocol: 10 clips, no twice-sample
        overrides.update(twice_sample=False, test_clips=ZOO["tsm_r50_dense_1x1x8_k400"].test_clips)
    if arch.get("dataset") and arch["dataset"] != spec.labels:  # e.g. the authors' Jester online model
        overrides["labels"] = arch["dataset"]
    assumptions = []
    if converted.layout in ("authors", "mmaction2") and "num_segments" not in hints_from_filename(path.name):
        assumptions.append(f"the file does not say its number of segments: assuming {spec.num_segments}")
    if converted.layout == "temporalshift":  # a bare state dict: the keys are the same for TSN and TSM
        assumptions.append(
            f"{path.name} is a bare state dict, which does not say its segments, shift or direction: "
            f"assuming {name} ({spec.num_segments} segments, "
            + ("no shift" if spec.is_tsn else f"shift 1/{spec.shift_div} {spec.shift_direction}")
            + "); to choose, name the model: create_model(NAME, checkpoint=PATH) or --model NAME"
        )
    return Recognised(path, converted.layout, converted.state_dict, name, overrides, list(converted.notes), assumptions)


# What our own files record exactly and the keys cannot show (a shift has no parameters). The
# number of segments may differ: the weights do not depend on it (testing with more frames is legitimate).
_EXACT_FIELDS = ("backbone", "width", "non_local", "shift_div", "shift_place", "shift_every", "shift_segments",
                 "shift_direction", "shift_padding", "temporal_pool")  # fmt: skip


def _check_compatible(model: Recognizer, found: Recognised) -> None:
    """Refuse a file whose shift settings contradict the model (the keys alone would load)."""
    spec = getattr(model, "spec", None)
    if spec is None or found.layout == "torchvision" or (found.layout == "temporalshift" and not found.exact):
        return
    from temporalshift.models.zoo import ZOO

    wanted = dataclasses.replace(ZOO[found.model_name], **found.overrides)
    if found.exact:
        problems = [f"{f}={getattr(wanted, f)!r} in the file, {getattr(spec, f)!r} in the model"
                    for f in _EXACT_FIELDS if getattr(wanted, f) != getattr(spec, f)]  # fmt: skip
        if problems:
            raise ValueError(
                f"{found.path.name} was built as {found.describe().split('-> ')[1]}, which does not fit the model: "
                + "; ".join(problems)
                + " (build the model with the file's settings, or leave the model name out)"
            )
        return
    problems = []
    for field in ("num_segments", "shift_place", "temporal_pool", "shift_direction"):
        if field in found.overrides or field in hints_from_filename(found.path.name):
            if getattr(spec, field) != getattr(wanted, field):
                problems.append(
                    f"{field}={getattr(wanted, field)!r} in the file, {getattr(spec, field)!r} in the model"
                )
    if (spec.shift_div == 0) != (wanted.shift_div == 0):
        problems.append("the file is " + ("TSN (no shift)" if wanted.shift_div == 0 else "TSM (shifted)") +
                        ", the model is " + ("TSN" if spec.shift_div == 0 else "TSM"))  # fmt: skip
    if problems:
        raise ValueError(f"{found.path.name} does not fit the model: " + "; ".join(problems))


def load_into(model: Recognizer, path: str | os.PathLike[str]) -> Recognised:
    """Convert ``path`` onto our layout and load it into ``model`` strictly."""
    found = recognise(path)
    if found.layout == "torchvision":  # ImageNet weights: the backbone only
        load_weights(model.backbone, {k.removeprefix("backbone."): v for k, v in found.state_dict.items()},
                     source=f"{Path(path).name} (torchvision ImageNet weights)")  # fmt: skip
        return found
    _check_compatible(model, found)
    state = dict(found.state_dict)
    if found.layout != "temporalshift":  # PaddleVideo and pre-0.4.1 PyTorch files have no BN counters
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = value
    load_weights(model, state, source=f"{Path(path).name} ({found.layout} layout)")
    return found


def load_checkpoint(path: str | os.PathLike[str], model: Recognizer | None = None, **overrides: Any) -> Recognizer:
    """A model with the weights of ``path`` (any known ecosystem); built from the file if not given.

    >>> model = load_checkpoint("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth")  # doctest: +SKIP
    """
    if model is None:
        from temporalshift.models.zoo import create_model

        found = recognise(path)
        for assumption in found.assumptions:
            warnings.warn(assumption, stacklevel=3)  # the caller of ts.load_checkpoint
        model = create_model(found.model_name, **{**found.overrides, **overrides})
    load_into(model, path)
    return model
