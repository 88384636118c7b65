"""Key converters for the published TSM checkpoints of the three ecosystems, onto our layout.

Each converter maps one ecosystem's state-dict keys onto ours (torchvision's keys under
``backbone.``, the classifier as ``head.fc``) and reports what the keys reveal about the
architecture. The layouts follow the module structure of each project (see
shared/CHECKPOINT-LAYOUTS.md of the team for the rules, re-derived from their code):

* the authors' repository (mit-han-lab/temporal-shift-module, ``ops/models.py``,
  ``ops/temporal_shift.py``, ``ops/non_local.py``, ``archs/mobilenet_v2.py``): a DataParallel-wrapped
  ``TSN`` (``module.base_model.*``, ``module.new_fc.*``); a shifted conv is wrapped as
  ``conv1.net``, a shifted block as ``layerL.B.net``, a pooled stage as ``layer2.net``; non-local
  wrappers ``layerL.B.block`` / ``layerL.B.nl.{g.0, theta, phi.0, W.0, W.1}``; its online
  MobileNetV2 has no prefix and a plain ``classifier``;
* mmaction2 0.x and 1.x (``resnet_tsm.py``, ``mobilenet_v2_tsm.py``, ``mobileone_tsm.py``, mmcv's
  ``ConvModule`` / ``NonLocal3d``): ``backbone.*`` with ``conv``/``bn`` children, ``.net`` for shifts,
  ``non_local_block`` for non-local, ``cls_head.fc_cls``;
* PaddleVideo (``resnet_tsm.py``): ``backbone.res2a.conv0._conv.weight``-style names, BN statistics
  as ``_mean``/``_variance``, a ``[in, out]`` classifier ``head.fc``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

LAYOUTS = ("temporalshift", "authors", "mmaction2", "paddlevideo", "torchvision")


@dataclass
class Converted:
    """Our state dict, the layout it came from, and what the keys say about the architecture."""

    layout: str
    state_dict: dict[str, Tensor]
    arch: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def detect_layout(keys: list[str]) -> str:
    """Which ecosystem wrote a state dict, from its key signature."""
    ks = set(keys)
    if any("._conv." in k or "._batch_norm." in k for k in ks):
        return "paddlevideo"
    if any(k.startswith("cls_head.") for k in ks) or any(re.match(r"backbone\.(conv1|layer\d\.\d+\.conv\d)\.conv\.", k)
                                                         for k in ks):  # fmt: skip
        return "mmaction2"
    if any(k.startswith("backbone.stage") and ".net." in k for k in ks):
        return "mmaction2"
    if any(k.startswith(("module.", "base_model.", "new_fc.")) for k in ks):
        return "authors"
    if any(k.startswith("head.fc.") for k in ks) and any(k.startswith("backbone.") for k in ks):
        return "temporalshift"
    if "fc.weight" in ks or "classifier.1.weight" in ks:
        return "torchvision"
    if any(re.match(r"features\.\d+\.conv\.\d+\.(net\.)?weight", k) for k in ks):
        return "authors"  # the authors' online MobileNetV2: no prefix, flat conv indices
    raise ValueError(f"unrecognised checkpoint layout (first keys: {sorted(ks)[:5]})")


# --- what the raw keys reveal ------------------------------------------------------------------


def _shift_hints(keys: list[str]) -> dict[str, Any]:
    """Shift wrappers add ``.net``: which blocks are shifted, where, and temporal pooling."""
    hints: dict[str, Any] = {}
    wrapped = [k for k in keys if ".net." in k]
    if not wrapped:
        return {"shift_div": 0}  # a checkpoint without shift wrappers is TSN
    if any(re.search(r"layer2\.net\.\d", k) for k in keys):
        hints["temporal_pool"] = True
    if any(re.search(r"layer\d\.\d+\.net\.", k) for k in keys) and not any(".stage" in k for k in keys):
        hints["shift_place"] = "block"
    blocks3 = {int(m.group(1)) for k in keys if (m := re.search(r"layer3\.(?:net\.)?(\d+)\.", k))}
    shifted3 = {int(m.group(1)) for k in wrapped if (m := re.search(r"layer3\.(?:net\.)?(\d+)\.", k))}
    if blocks3 and shifted3 and shifted3 == {b for b in blocks3 if b % 2 == 0} and len(blocks3) >= 23:
        hints["shift_every"] = 2
    return hints


def _fold_conv_bias_into_bn(sd: dict[str, Tensor], bias_key: str, bn_prefix: str) -> None:
    """A conv bias feeding a BatchNorm is the same as shifting the BN's running mean."""
    bias = sd.pop(bias_key)
    sd[f"{bn_prefix}.running_mean"] = sd[f"{bn_prefix}.running_mean"] - bias


# --- the authors' repository -----------------------------------------------------------------------

_MBV2_T6 = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_MBV2_T1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def _authors(sd: dict[str, Tensor]) -> Converted:
    keys = [k.removeprefix("module.") for k in sd]
    hints = _shift_hints(keys)
    expanded = {m.group(1) for k in keys if (m := re.search(r"features\.(\d+)\.conv\.6\.", k))}
    out: dict[str, Tensor] = {}
    for raw, v in sd.items():
        k = raw.removeprefix("module.")
        if k.startswith(("new_fc.", "classifier.", "base_model.classifier.", "base_model.fc.")):
            out["head.fc." + k.rsplit(".", 1)[1]] = v
            continue
        k = k.removeprefix("base_model.").replace(".net.", ".")
        k = re.sub(r"^(layer\d\.\d+)\.block\.", r"\1.", k)
        k = re.sub(r"^(layer\d\.\d+)\.nl\.(g|phi)\.0\.", r"\1.non_local.\2.", k)
        k = re.sub(r"^(layer\d\.\d+)\.nl\.theta\.", r"\1.non_local.theta.", k)
        k = re.sub(r"^(layer\d\.\d+)\.nl\.W\.0\.", r"\1.non_local.conv_out.", k)
        k = re.sub(r"^(layer\d\.\d+)\.nl\.W\.1\.", r"\1.non_local.bn.", k)
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)$", k)
        if m:
            table = _MBV2_T6 if m.group(1) in expanded else _MBV2_T1
            k = f"features.{m.group(1)}.conv.{table[m.group(2)]}.{m.group(3)}"
        out["backbone." + k] = v
    for bias in [k for k in out if k.endswith("non_local.conv_out.bias")]:
        _fold_conv_bias_into_bn(out, bias, bias.replace("conv_out.bias", "bn"))
    notes = []
    if any(".non_local." in k for k in out):
        hints["non_local"] = "embedded_gaussian"  # the authors' ops/non_local.py
        notes.append("non-local conv biases folded into the following BatchNorm (exact)")
    if not any(k.startswith(("module.", "base_model.")) for k in sd):
        hints.setdefault("shift_direction", "right")  # the online demo's uni-directional model
        notes.append("no prefix and no shift wrappers: the authors' online (uni-directional) MobileNetV2")
        hints.pop("shift_div", None)
    return Converted("authors", out, hints, notes)


# --- mmaction2 -------------------------------------------------------------------------------------

_MMA_MBV2_STAGES = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (6, 3), (7, 1)]  # (layer, blocks)


def _mma_mbv2_index() -> dict[str, int]:
    index, n = {}, 1
    for layer, blocks in _MMA_MBV2_STAGES:
        for b in range(blocks):
            index[f"layer{layer}.{b}"] = n
            n += 1
    return index


def _mmaction2(sd: dict[str, Tensor]) -> Converted:
    keys = list(sd)
    hints = _shift_hints(keys)
    mbv2 = _mma_mbv2_index()
    expanded = {m.group(1) for k in keys if (m := re.match(r"backbone\.(layer\d\.\d+)\.conv\.2\.", k))}
    out: dict[str, Tensor] = {}
    for raw, v in sd.items():
        if raw.startswith("data_preprocessor."):
            continue
        if raw.startswith("cls_head.fc_cls."):
            out["head.fc." + raw.rsplit(".", 1)[1]] = v
            continue
        k = raw.removeprefix("backbone.")
        k = k.replace(".net.", ".")
        k = re.sub(r"^(layer\d\.\d+)\.block\.", r"\1.", k)
        k = re.sub(r"^(layer\d\.\d+)\.non_local_block\.(g|phi)\.0\.conv\.", r"\1.non_local.\2.", k)
        k = re.sub(r"^(layer\d\.\d+)\.non_local_block\.theta\.conv\.", r"\1.non_local.theta.", k)
        k = re.sub(r"^(layer\d\.\d+)\.non_local_block\.conv_out\.conv\.", r"\1.non_local.conv_out.", k)
        k = re.sub(r"^(layer\d\.\d+)\.non_local_block\.conv_out\.bn\.", r"\1.non_local.bn.", k)
        k = re.sub(r"\.se\.conv(\d)\.conv\.", r".se.conv\1.", k)
        if k.startswith("stage"):
            out["backbone." + k] = v
            continue
        m = re.match(r"(layer\d\.\d+)\.conv\.(\d)\.(conv|bn)\.(.+)$", k)
        if m and m.group(1) in mbv2:  # MobileNetV2: ConvModules -> torchvision's Conv2dNormActivation
            block, idx, part, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            last = 2 if block in expanded else 1
            if idx < last:
                k = f"features.{mbv2[block]}.conv.{idx}.{0 if part == 'conv' else 1}.{rest}"
            else:
                k = f"features.{mbv2[block]}.conv.{idx + (part == 'bn')}.{rest}"
        elif k.startswith(("conv1.", "conv2.")) and any(kk.startswith("backbone.layer7") for kk in keys):
            n = 0 if k.startswith("conv1.") else 18
            part, rest = k.split(".", 2)[1:]
            k = f"features.{n}.{0 if part == 'conv' else 1}.{rest}"
        else:  # ResNet
            k = re.sub(r"^conv1\.conv\.", "conv1.", k)
            k = re.sub(r"^conv1\.bn\.", "bn1.", k)
            k = re.sub(r"\.conv(\d)\.conv\.", r".conv\1.", k)
            k = re.sub(r"\.conv(\d)\.bn\.", r".bn\1.", k)
            k = k.replace(".downsample.conv.", ".downsample.0.").replace(".downsample.bn.", ".downsample.1.")
        out["backbone." + k] = v
    if any(".non_local." in k for k in out):
        hints["non_local"] = "gaussian" if not any("non_local.theta" in k for k in out) else None
    return Converted("mmaction2", out, {k: v for k, v in hints.items() if v is not None})


# --- PaddleVideo -----------------------------------------------------------------------------------


def _paddle_block_index(name: str) -> int:
    """``a`` -> 0, ``b`` -> 1, ... and ``b1``...``b22`` (ResNet-101/152's third stage) -> 1...22."""
    if len(name) > 1 and name[0] == "b" and name[1:].isdigit():
        return int(name[1:])
    return ord(name) - ord("a")


def _paddlevideo(sd: dict[str, Tensor]) -> Converted:
    out: dict[str, Tensor] = {}
    stats = {"_mean": "running_mean", "_variance": "running_var", "weight": "weight", "bias": "bias"}
    for raw, v in sd.items():
        k = raw.removeprefix("backbone.")
        if k.startswith("head.fc."):
            out["head.fc." + k.rsplit(".", 1)[1]] = v.t().contiguous() if k.endswith("weight") else v
            continue
        m = re.match(r"conv\._(conv|batch_norm)\.(\w+)$", k)
        if m:
            out[
                "backbone." + ("conv1" if m.group(1) == "conv" else "bn1") + "." + stats.get(m.group(2), m.group(2))
            ] = v
            continue
        m = re.match(r"res(\d)([a-z]\d*)\.(conv\d|short)\._(conv|batch_norm)\.(\w+)$", k)
        if not m:
            raise ValueError(f"unexpected PaddleVideo key {raw!r}")
        layer, block = int(m.group(1)) - 1, _paddle_block_index(m.group(2))
        part, kind, leaf = m.group(3), m.group(4), stats.get(m.group(5), m.group(5))
        if part == "short":
            name = f"downsample.{0 if kind == 'conv' else 1}"
        else:
            n = int(part[-1]) + 1
            name = f"conv{n}" if kind == "conv" else f"bn{n}"
        out[f"backbone.layer{layer}.{block}.{name}.{leaf}"] = v
    # PaddleVideo's shift: first group from t-1, 1/num_segments each way, in every block.
    hints = {"shift_direction": "bidirectional_reversed", "shift_every": 1}
    notes = ["PaddleVideo shifts the first channel group from the past: shift_direction=bidirectional_reversed"]
    return Converted("paddlevideo", out, hints, notes)


# --- torchvision ImageNet weights (backbone initialisation) ------------------------------------------


def _torchvision(sd: dict[str, Tensor]) -> Converted:
    out = {"backbone." + k: v for k, v in sd.items() if not k.startswith(("fc.", "classifier."))}
    return Converted("torchvision", out, {"backbone_only": True}, ["ImageNet classifier dropped"])


def convert(sd: dict[str, Tensor], layout: str | None = None) -> Converted:
    """Map a state dict of any known layout onto ours (detecting the layout unless given)."""
    wrapped = ("module.base_model.", "module.new_fc.")  # the authors' own prefix, kept for their layout
    if (
        layout is None
        and sd
        and all(k.startswith("module.") for k in sd)
        and not any(k.startswith(wrapped) for k in sd)
    ):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}  # saved from DataParallel / DDP
    layout = layout or detect_layout(list(sd))
    if layout == "temporalshift":
        return Converted("temporalshift", dict(sd))
    return {"authors": _authors, "mmaction2": _mmaction2, "paddlevideo": _paddlevideo,
            "torchvision": _torchvision}[layout](dict(sd))  # fmt: skip


# --- architecture from keys and file names -------------------------------------------------------------


def infer_architecture(sd: dict[str, Tensor]) -> dict[str, Any]:
    """Backbone, width and classes from our keys."""
    arch: dict[str, Any] = {}
    if "head.fc.weight" in sd:
        arch["num_classes"] = int(sd["head.fc.weight"].shape[0])
    if "backbone.features.18.0.weight" in sd:
        arch["backbone"] = "mobilenetv2"
    elif any(k.startswith("backbone.stage0.") for k in sd):
        from temporalshift.models.backbones.mobileone import MOBILEONE_ARCHS

        stem = [k for k in sd if k.startswith("backbone.stage2.1.")]
        channels = int(sd[[k for k in sd if k.startswith("backbone.stage1.1.") and k.endswith("weight")][0]].shape[0])
        stage2 = int(sd[[k for k in stem if k.endswith("weight")][0]].shape[0]) if stem else None
        for name, spec in MOBILEONE_ARCHS.items():
            if int(64 * spec["width"][0]) == channels and (stage2 is None or int(128 * spec["width"][1]) == stage2):
                arch["backbone"] = f"mobileone_{name}"
                break
    elif "backbone.layer1.0.conv1.weight" in sd:
        from temporalshift.models.backbones.resnet import RESNET_DEPTHS

        blocks = tuple(
            len({int(m.group(1)) for k in sd if (m := re.match(rf"backbone\.layer{i}\.(\d+)\.", k))})
            for i in range(1, 5)
        )
        kind = "bottleneck" if "backbone.layer1.0.conv3.weight" in sd else "basic"
        for depth, (block_kind, stage_blocks) in RESNET_DEPTHS.items():
            if block_kind == kind and stage_blocks == blocks:
                arch["backbone"] = f"resnet{depth}"
        arch["width"] = int(sd["backbone.conv1.weight"].shape[0])
    if any(".non_local.theta." in k for k in sd):
        arch["non_local"] = "embedded_gaussian"  # dot_product has the same keys: the file name decides
    elif any(".non_local." in k for k in sd):
        arch["non_local"] = "gaussian"
    return arch


def hints_from_filename(name: str) -> dict[str, Any]:
    """What the authors' and mmaction2's file names say (segments, shift, non-local mode, dataset).

    >>> hints_from_filename("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth")
    {'num_segments': 8, 'shift_div': 8, 'shift_place': 'blockres', 'dataset': 'kinetics400'}
    >>> hints_from_filename("TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth")["dataset"]
    'sthv1'
    """
    low = name.lower()
    hints: dict[str, Any] = {}
    if m := re.search(r"segment(\d+)", low):
        hints["num_segments"] = int(m.group(1))
    elif m := re.search(r"1x1x(\d+)", low):
        hints["num_segments"] = int(m.group(1))
    if m := re.search(r"shift(\d+)", low):
        hints["shift_div"] = int(m.group(1))
    if m := re.search(r"_(blockres|block)_", low):
        hints["shift_place"] = m.group(1)
    if "dense" in low:
        hints["sampling"] = "dense"
    if "dot-product" in low or "nl_dot" in low or "nl-dot" in low:
        hints["non_local"] = "dot_product"
    elif "embedded-gaussian" in low or "embgauss" in low:
        hints["non_local"] = "embedded_gaussian"
    elif "nl-gaussian" in low or "nl_gauss" in low:
        hints["non_local"] = "gaussian"
    if "kinetics" in low or "k400" in low:
        hints["dataset"] = "kinetics400"
    elif re.search(r"something[-_]?v2|sthv2|ssv2", low):
        hints["dataset"] = "sthv2"
    elif "something" in low or "sthv1" in low:  # the authors' "something" files are V1 ("somethingv2": V2)
        hints["dataset"] = "sthv1"
    elif "jester" in low:
        hints["dataset"] = "jester"
    return hints


def to_tensors(obj: dict[str, Any]) -> dict[str, Tensor]:
    """numpy arrays (PaddleVideo) -> tensors; anything not array-like is dropped."""
    import numpy as np

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in obj.items() if isinstance(v, np.ndarray)}
