"""The model zoo: one named, frozen config per published TSM model, and ``create_model``.

Each :class:`ModelSpec` states a row of the published model zoos once: architecture, sampling and
test protocol, preprocessing, label set, published accuracy and where its weights live. Nothing
registers itself; ``ZOO`` is a plain dict (see shared/TSM-FACTS.md for the figures).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from temporalshift.data.sampling import SAMPLING_MODES, SamplingSpec
from temporalshift.data.transforms import CROPS_PER_CLIP, TEST_CROPS
from temporalshift.models.backbones.mobilenetv2 import MobileNetV2
from temporalshift.models.backbones.mobileone import MOBILEONE_ARCHS, MobileOne
from temporalshift.models.backbones.resnet import RESNET_DEPTHS, SHIFT_PLACES, ResNet
from temporalshift.models.complexity import count_flops, count_params
from temporalshift.models.recognizer import Recognizer
from temporalshift.ops.shift import DIRECTIONS, PADDINGS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES: tuple[str, ...] = (
    *(f"resnet{d}" for d in RESNET_DEPTHS),
    "mobilenetv2",
    *(f"mobileone_{a}" for a in MOBILEONE_ARCHS),
)
_MMA = "https://download.openmmlab.com/mmaction/v1.0/recognition/tsm"


@dataclass(frozen=True)
class Published:
    """A published result: accuracy (%) under a test protocol, and who published it."""

    top1: float
    top5: float | None
    protocol: str
    source: str


@dataclass(frozen=True)
class Weights:
    """Where a published checkpoint lives and which ecosystem's key layout it uses."""

    url: str
    layout: str  # "mmaction2" | "authors" | "paddlevideo" | "temporalshift"

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix the publisher put in the file name (``..._20220831-64d69186.pth``)."""
        stem = self.url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        tail = stem.rsplit("-", 1)[-1]
        return tail if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else None


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a zoo model and feed it as its publishers did.

    ``shift_div=0`` is the shift-free TSN baseline. ``shift_segments`` (default: ``num_segments``)
    is the group size the shifts see; mmaction2's MobileOne-S4 1x1x16 keeps it at 8.
    """

    backbone: str = "resnet50"
    num_segments: int = 8
    num_classes: int = 400
    shift_div: int = 8
    shift_place: str = "blockres"
    shift_segments: int | None = None
    shift_every: int | None = None  # ResNet: shift every k-th block (None: 2 for 23+ blocks in layer3)
    shift_direction: str = "bidirectional"
    shift_padding: str = "zero"
    temporal_pool: bool = False
    non_local: str | None = None  # "dot_product" | "gaussian" | "embedded_gaussian"
    width: int = 64  # ResNet base width (64 = the published models)
    dropout: float = 0.5
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: str = "kinetics400"
    sampling: str = "segment"  # "segment" (TSN uniform, "1x1xN") | "dense"
    # The published test protocol: clips per video (x2 with twice_sample) x crops per clip.
    test_clips: int = 1
    twice_sample: bool = False
    test_crops: str = "center"  # "center" | "three" | "ten" | "full"
    published: Published | None = None
    weights: Weights | None = None
    description: str = ""

    @property
    def is_tsn(self) -> bool:
        return self.shift_div == 0


def _k400(top1: float, top5: float, protocol: str, url: str, **kw: Any) -> dict[str, Any]:
    return {
        "published": Published(top1, top5, protocol, "mmaction2 1.x model zoo"),
        "weights": Weights(f"{_MMA}/{url}", "mmaction2"),
        **kw,
    }


def _sth(top1: float, top5: float, protocol: str, url: str, **kw: Any) -> dict[str, Any]:
    return _k400(
        top1, top5, protocol, url, num_classes=174, labels="sthv2", twice_sample=True, test_crops="three", **kw
    )


def _mma(config: str, stamp: str) -> str:
    return f"{config}/{config}_{stamp}.pth"


_R50_K400 = "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb"
_NL = "tsm_imagenet-pretrained-r50-nl-{}_8xb16-1x1x8-50e_kinetics400-rgb"

ZOO: dict[str, ModelSpec] = {
    "tsm_r50_1x1x8_k400": ModelSpec(
        description="TSM ResNet-50, 8 uniform segments, Kinetics-400 (50 epochs)",
        twice_sample=True,
        test_crops="ten",
        **_k400(73.18, 90.56, "8 clips x 10 crop", _mma(_R50_K400, "20220831-64d69186")),
    ),
    "tsm_r50_1x1x16_k400": ModelSpec(
        description="TSM ResNet-50, 16 uniform segments, Kinetics-400",
        num_segments=16,
        twice_sample=True,
        test_crops="ten",
        **_k400(
            75.12,
            91.55,
            "16 clips x 10 crop",
            _mma("tsm_imagenet-pretrained-r50_8xb16-1x1x16-50e_kinetics400-rgb", "20220831-042b1748"),
        ),
    ),
    "tsm_r50_dense_1x1x8_k400": ModelSpec(
        description="TSM ResNet-50, 8 frames by dense sampling (stride 8), Kinetics-400",
        sampling="dense",
        test_clips=10,
        test_crops="ten",
        **_k400(
            73.38,
            90.78,
            "8 clips x 10 crop",
            _mma("tsm_imagenet-pretrained-r50_8xb16-dense-1x1x8-50e_kinetics400-rgb", "20220831-f55d3c2b"),
        ),
    ),
    "tsm_r50_nl_dot_1x1x8_k400": ModelSpec(
        description="TSM ResNet-50 with dot-product non-local blocks, Kinetics-400",
        non_local="dot_product",
        twice_sample=True,
        test_crops="ten",
        **_k400(74.49, 91.15, "8 clips x 10 crop", _mma(_NL.format("dot-product"), "20220831-108bfde5")),
    ),
    "tsm_r50_nl_gauss_1x1x8_k400": ModelSpec(
        description="TSM ResNet-50 with gaussian non-local blocks, Kinetics-400",
        non_local="gaussian",
        twice_sample=True,
        test_crops="ten",
        **_k400(73.66, 90.99, "8 clips x 10 crop", _mma(_NL.format("gaussian"), "20220831-7e54dacf")),
    ),
    "tsm_r50_nl_embgauss_1x1x8_k400": ModelSpec(
        description="TSM ResNet-50 with embedded-gaussian non-local blocks, Kinetics-400",
        non_local="embedded_gaussian",
        twice_sample=True,
        test_crops="ten",
        **_k400(74.34, 91.23, "8 clips x 10 crop", _mma(_NL.format("embedded-gaussian"), "20220831-35eddb57")),
    ),
    "tsm_mobilenetv2_1x1x8_k400": ModelSpec(
        description="TSM MobileNetV2, 8 uniform segments, Kinetics-400",
        backbone="mobilenetv2",
        twice_sample=True,
        test_crops="three",
        **_k400(
            68.71,
            88.32,
            "8 clips x 3 crop",
            _mma("tsm_imagenet-pretrained-mobilenetv2_8xb16-1x1x8-100e_kinetics400-rgb", "20230414-401127fd"),
        ),
    ),
    "tsm_mobileones4_1x1x16_k400": ModelSpec(
        description="TSM MobileOne-S4, 16 uniform segments shifted in groups of 8, Kinetics-400",
        backbone="mobileone_s4",
        num_segments=16,
        shift_segments=8,
        shift_place="block",
        twice_sample=True,
        test_crops="ten",
        **_k400(
            74.38,
            91.71,
            "16 clips x 10 crop",
            _mma("tsm_imagenet-pretrained-mobileone-s4_8xb16-1x1x16-50e_kinetics400-rgb", "20230825-a7f8876b"),
        ),
    ),
    "tsm_r50_1x1x8_sthv2": ModelSpec(
        description="TSM ResNet-50, 8 uniform segments, Something-Something V2",
        **_sth(
            62.72,
            87.70,
            "8 clips x 3 crop",
            _mma("tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb", "20230317-be0fc26e"),
        ),
    ),
    "tsm_r50_1x1x16_sthv2": ModelSpec(
        description="TSM ResNet-50, 16 uniform segments, Something-Something V2",
        num_segments=16,
        **_sth(
            64.16,
            88.61,
            "16 clips x 3 crop",
            _mma("tsm_imagenet-pretrained-r50_8xb16-1x1x16-50e_sthv2-rgb", "20230317-ec6696ad"),
        ),
    ),
    "tsm_r101_1x1x8_sthv2": ModelSpec(
        description="TSM ResNet-101 (shift in every other block), 8 segments, Something-Something V2",
        backbone="resnet101",
        **_sth(
            63.70,
            88.28,
            "8 clips x 3 crop",
            _mma("tsm_imagenet-pretrained-r101_8xb16-1x1x8-50e_sthv2-rgb", "20230320-efcc0d1b"),
        ),
    ),
    "tsm_r50_1x1x8_sthv1": ModelSpec(
        description="TSM ResNet-50, 8 uniform segments, Something-Something V1",
        num_classes=174,
        labels="sthv1",
        published=Published(44.62, 75.51, "1 clip x 1 crop", "mmaction2 0.x model zoo"),
        weights=Weights(
            "https://download.openmmlab.com/mmaction/recognition/tsm/tsm_r50_1x1x8_50e_sthv1_rgb/"
            "tsm_r50_1x1x8_50e_sthv1_rgb_20200616-3417f361.pth",
            "mmaction2",
        ),
    ),
    "tsm_mobilenetv2_online_1x1x8_k400": ModelSpec(
        description="Online (uni-directional) TSM MobileNetV2, 8 segments, Kinetics-400: streams one frame at a time",
        backbone="mobilenetv2",
        shift_direction="right",
        twice_sample=True,
        test_crops="three",
    ),
    "tsn_r50_1x1x8_k400": ModelSpec(
        description="TSN ResNet-50 (TSM with shifts off), 8 uniform segments, Kinetics-400",
        shift_div=0,
        published=Published(68.8, None, "8 frames x 1 clip x 1 crop", "authors' README (TSN 8x1)"),
    ),
    "tsn_mobilenetv2_1x1x8_k400": ModelSpec(
        description="TSN MobileNetV2 (TSM with shifts off), 8 uniform segments, Kinetics-400",
        backbone="mobilenetv2",
        shift_div=0,
        twice_sample=True,
        test_crops="three",
    ),
}


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the model zoo, sorted, optionally filtered by a shell-style pattern.

    >>> list_models("tsn_*")
    ['tsn_mobilenetv2_1x1x8_k400', 'tsn_r50_1x1x8_k400']
    """
    names = sorted(ZOO)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


_SIMPLE = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` suits a field typed ``hint`` (plain types, optionals, lists/tuples; others pass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if hint in _SIMPLE:
        return isinstance(value, _SIMPLE[hint]) and not (hint is not bool and isinstance(value, bool))
    return True


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def get_spec(name: str, **overrides: Any) -> ModelSpec:
    """The zoo config ``name`` with ``overrides`` applied (e.g. ``num_segments=16``).

    >>> get_spec("tsm_r50_1x1x8_k400", num_classes=10).num_classes
    10
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__} (see ts.list_models())")
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}{_suggest(name, list(ZOO))} (see `tsm models`)")
    fields = [f.name for f in dataclasses.fields(ModelSpec)]
    hints = typing.get_type_hints(ModelSpec)
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"unknown model option {key!r}{_suggest(key, fields)}")
        if not _fits(value, hints[key]):
            raise ValueError(f"model option {key} must be {_type_name(hints[key])}, got {value!r}")
    spec = dataclasses.replace(ZOO[name], **overrides) if overrides else ZOO[name]
    if spec.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {spec.backbone!r}{_suggest(spec.backbone, list(BACKBONES))}")
    _check_values(spec)
    return spec


def _check_values(spec: ModelSpec) -> None:
    """Refuse option values no model can be built or fed with, before anything is built."""
    choices = {"shift_direction": DIRECTIONS, "shift_padding": PADDINGS, "shift_place": SHIFT_PLACES,
               "sampling": SAMPLING_MODES, "test_crops": TEST_CROPS}  # fmt: skip
    for key, allowed in choices.items():
        if getattr(spec, key) not in allowed:
            raise ValueError(f"model option {key} must be one of {', '.join(allowed)}, got {getattr(spec, key)!r}")
    least = {"num_segments": 1, "num_classes": 1, "width": 1, "input_size": 32, "test_clips": 1, "shift_div": 0}
    least |= {"shift_every": 1, "shift_segments": 1}  # None (the default) passes
    for key, low in least.items():
        value = getattr(spec, key)
        if value is not None and value < low:
            raise ValueError(f"model option {key} must be at least {low}, got {value}")
    for key in ("mean", "std"):
        value = getattr(spec, key)
        if len(value) != 3 or (key == "std" and min(value) <= 0):
            raise ValueError(f"model option {key} must be three (R, G, B) values" + (" above 0" if key == "std" else "")
                             + f", got {value!r}")  # fmt: skip
    if not 0 <= spec.dropout < 1:
        raise ValueError(f"model option dropout must be in [0, 1), got {spec.dropout}")
    if spec.shift_div == 1 and spec.shift_direction.startswith("bidirectional"):
        raise ValueError("model option shift_div must be 0 (no shift) or at least 2 for a bidirectional shift, got 1")
    segments = spec.shift_segments or spec.num_segments
    if spec.num_segments % segments:
        raise ValueError(f"model option shift_segments={segments} must divide num_segments={spec.num_segments} "
                         "(set shift_segments with num_segments)")  # fmt: skip
    if spec.sampling == "dense" and spec.twice_sample:
        raise ValueError("model option twice_sample takes a second view from segment starts; dense sampling has none")
    if spec.temporal_pool and spec.num_segments % 2:
        raise ValueError(f"temporal_pool halves the frames: num_segments must be even, got {spec.num_segments}")


def _non_local_pattern(depth: int) -> list[list[int]]:
    """Non-local after every other block of layer2 and layer3 (mmaction2's TSM NL configs)."""
    blocks = RESNET_DEPTHS[depth][1]
    return [[int(s in (1, 2) and i % 2 == 0) for i in range(n)] for s, n in enumerate(blocks)]


def build_backbone(spec: ModelSpec) -> nn.Module:
    """The backbone a spec describes, with its shifts (or none for TSN)."""
    segments = spec.shift_segments or spec.num_segments
    shift = {
        "num_segments": segments,
        "shift_div": spec.shift_div,
        "shift_direction": spec.shift_direction,
        "shift_padding": spec.shift_padding,
    }
    if spec.backbone.startswith("resnet"):
        depth = int(spec.backbone[len("resnet") :])
        return ResNet(
            depth,
            shift_place=spec.shift_place,
            shift_every=spec.shift_every,
            temporal_pool=spec.temporal_pool,
            non_local=_non_local_pattern(depth) if spec.non_local else None,
            non_local_mode=spec.non_local or "embedded_gaussian",
            base_width=spec.width,
            **shift,
        )
    if spec.temporal_pool or spec.non_local or spec.width != 64:
        raise ValueError("temporal_pool, non_local and width are only available for ResNet backbones")
    if spec.backbone == "mobilenetv2":
        return MobileNetV2(**shift)
    return MobileOne(spec.backbone.split("_", 1)[1], **shift)


def build_model(spec: ModelSpec) -> Recognizer:
    """A randomly initialised recognizer for ``spec``."""
    model = Recognizer(build_backbone(spec), spec.num_classes, spec.num_segments, dropout=spec.dropout)
    model.spec = spec
    return model


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool | str | os.PathLike[str] = False,
    **overrides: Any,
) -> Recognizer:
    """Build the zoo model ``name``; optionally load published or local weights.

    Args:
        name: a zoo name (see :func:`list_models`).
        num_classes: replace the classifier's size (e.g. to fine-tune on another dataset).
        checkpoint: a checkpoint file of any known ecosystem (ours, the authors', mmaction2,
            PaddleVideo), converted and loaded strictly (never executing pickled code).
        pretrained: ``True`` downloads the zoo row's published weights once into ``$TSM_HOME``
            (hash-checked); ``"imagenet"`` initialises the backbone from torchvision's ImageNet
            weights; a path or URL loads that file.
        **overrides: any :class:`ModelSpec` field, e.g. ``num_segments=16`` or ``shift_div=0``.

    The model has ``num_segments``, ``num_classes`` and ``spec`` attributes.

    >>> model = create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=10)
    >>> (model.num_segments, model.num_classes)
    (8, 10)
    """
    from temporalshift.models import hub
    from temporalshift.models.loading import load_into

    if num_classes is not None:
        overrides["num_classes"] = num_classes
    spec = get_spec(name, **overrides)
    model = build_model(spec)
    model.name = name
    source: str | os.PathLike[str] | None = checkpoint
    if pretrained is True:
        if spec.weights is None:
            raise ValueError(f"{name} has no published weights; pass checkpoint=PATH or pretrained='imagenet'")
        source = spec.weights.url
    elif pretrained == "imagenet":
        url = hub.IMAGENET_URLS.get(spec.backbone)
        if url is None:
            raise ValueError(f"no torchvision ImageNet weights for {spec.backbone}")
        source = url
    elif pretrained:
        source = pretrained
    if source is not None:
        load_into(model, hub.resolve(source))
    return model


def load_checkpoint(path: str | os.PathLike[str], model: Recognizer | None = None, **overrides: Any) -> Recognizer:
    """A model with the weights of ``path`` (ours, the authors', mmaction2's or PaddleVideo's);
    built from what the file says when ``model`` is not given. See :mod:`temporalshift.models.loading`."""
    from temporalshift.models.loading import load_checkpoint as _load

    return _load(path, model, **overrides)


@torch.no_grad()
def describe(name: str) -> dict[str, Any]:
    """Parameters and FLOPs computed from the model itself, with its published figures.

    FLOPs are mmaction2 1.x's: backbone only, one clip ``(T, 3, 224, 224)``, fvcore's convention
    (see :mod:`temporalshift.models.complexity`). The model is built on the ``meta`` device, so
    nothing is computed but shapes.
    """
    spec = get_spec(name)
    with torch.device("meta"):
        model = build_model(spec)
        frames = torch.zeros(spec.num_segments, 3, spec.input_size, spec.input_size)
    pub = spec.published
    return {
        "name": name,
        "backbone": spec.backbone,
        "shift": "off (TSN)" if spec.is_tsn else f"1/{spec.shift_div} {spec.shift_place}",
        "frames": spec.num_segments,
        "num_classes": spec.num_classes,
        "dataset": spec.labels,
        "params": count_params(model),
        "flops": count_flops(model.backbone, frames),
        "input_size": spec.input_size,
        "top1": pub.top1 if pub else None,
        "top5": pub.top5 if pub else None,
        "protocol": pub.protocol if pub else None,
        "source": pub.source if pub else None,
        "test_views": _test_views(spec),
    }


def _test_views(spec: ModelSpec) -> str:
    """What `tsm test` and `tsm predict` run per video: clips (twice-sample doubles them) x crops."""
    clips = SamplingSpec(test_clips=spec.test_clips, twice_sample=spec.twice_sample).test_views
    crops = CROPS_PER_CLIP[spec.test_crops]
    return f"{clips} clip{'s' * (clips > 1)} x {crops} crop{'s' * (crops > 1)}"


def spec_overrides(model: nn.Module) -> dict[str, Any]:
    """The fields of ``model.spec`` that differ from its zoo entry (enough to rebuild it by name)."""
    spec, name = model.spec, getattr(model, "name", None)
    if name not in ZOO:
        raise ValueError("the model has no zoo name; build it with create_model(name, ...)")
    base = ZOO[name]
    skip = ("published", "weights", "description")
    return {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(ModelSpec)
        if f.name not in skip and getattr(spec, f.name) != getattr(base, f.name)
    }
