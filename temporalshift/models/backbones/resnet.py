"""ResNet-18...152 with temporal shifts, in torchvision's exact module layout.

Module and parameter names are torchvision's (``conv1``, ``bn1``, ``layerL.B.conv1``...,
``layerL.B.downsample.{0,1}``), and the shift and temporal pool hold no state, so ImageNet weights
of ``torchvision.models.resnet50`` (without ``fc.*``) load with ``strict=True``.

Shift placement (TSM paper, section 3.3):
* ``"blockres"``: shift inside the residual branch, before ``conv1``; the identity is not shifted.
* ``"block"``: shift the block's input, for both the residual branch and the identity.
For ResNet-101/152 (23+ blocks in ``layer3``) the authors and mmaction2 shift every other block
(``shift_every=2``); we pick the same default so that their checkpoints behave the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from temporalshift.models.backbones.non_local import NonLocalBlock
from temporalshift.ops.shift import TemporalShift, inference_fast_path, may_consume_inputs, shifted_residual

# depth -> (block type, blocks per stage)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
SHIFT_PLACES: tuple[str, ...] = ("blockres", "block")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class _ShiftBlock(nn.Module):
    """What both residual block types share: where the shift goes and the optional non-local."""

    shift: TemporalShift | None
    non_local: NonLocalBlock | None
    conv_names: tuple[str, ...] = ()  # the residual branch's convolutions in order; bn<i> follows conv<i>

    def _setup(self, downsample: nn.Module | None) -> None:
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shift = None
        self.shift_place = "blockres"
        self.non_local = None
        self.fused = False  # set by optimize_for_inference: convs are FusedConv2d, BNs folded

    def convs(self) -> list[nn.Conv2d]:
        return [getattr(self, name) for name in self.conv_names]

    def _after_conv1(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _residual(self, x: Tensor) -> Tensor:
        return self._after_conv1(self.conv1(x))

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self._fused_forward(x)
        if self.shift is not None and self.shift_place == "block":
            x = self.shift.shift_owned(x)  # the block's input feeds both paths shifted
        identity = None if self.downsample is None else self.downsample(x)
        if self.shift is not None and self.shift_place == "blockres":
            # conv1(shift(x)) + x without a full-size shifted copy; the identity is x unshifted
            out = shifted_residual(x, self.shift, self.conv1, self._after_conv1, identity)
        else:
            out = self._residual(x)
            out += x if identity is None else identity
        out = self.relu(out)
        if self.non_local is not None:
            out = self.non_local(out)
        return out

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The fast form's block: each conv applies its ReLU, the last one adds the identity and
        applies the block's ReLU as it writes (see :mod:`temporalshift.ops.fused`). The output is
        written over the identity (``x`` itself when there is no downsample): ``x`` is consumed
        inside :func:`~temporalshift.ops.shift.consumable_inputs`, else copied first."""
        if self.shift is not None and self.shift_place == "block":
            x = self.shift.shift_owned(x)  # in place when consumable, else a copy (a hook may hold it)
        identity = x if self.downsample is None else self.downsample(x)
        first, *inner, last = self.convs()
        if self.shift is None or self.shift_place != "blockres":
            y = first(x)
        elif identity is x:  # shift in place for conv1, then restore: moves the least memory
            y = self.shift.call_shifted(x, first)
        else:
            y = first(self.shift.shift_owned(x))  # the downsample has read x already
        for conv in inner:
            y = conv(y)
        if inference_fast_path() and not may_consume_inputs():
            identity = identity.clone()  # x, or a downsample's output, may be a hook's: write elsewhere
        out = last.add_into_(identity, y, relu=True)  # type: ignore[operator]
        if self.non_local is not None:
            out = self.non_local(out)
        return out


class BasicBlock(_ShiftBlock):
    """torchvision's BasicBlock (two 3x3 convs) with an optional shift and non-local."""

    expansion = 1
    conv_names = ("conv1", "conv2")

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._setup(downsample)

    def _after_conv1(self, y: Tensor) -> Tensor:
        out = self.relu(self.bn1(y))
        return self.bn2(self.conv2(out))


class Bottleneck(_ShiftBlock):
    """torchvision's Bottleneck (ResNet v1.5: stride on the 3x3 conv) with shift and non-local."""

    expansion = 4
    conv_names = ("conv1", "conv2", "conv3")

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self._setup(downsample)

    def _after_conv1(self, y: Tensor) -> Tensor:
        out = self.relu(self.bn1(y))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """ResNet backbone over frames ``(N*T, 3, H, W)`` -> feature maps ``(N*T', C, H/32, W/32)``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_segments: T, frames per clip seen by the shifts (and the non-local blocks).
        shift_div: 1/shift_div of the channels move each way; 0 turns shifts off (TSN).
        shift_place: ``"blockres"`` or ``"block"``.
        shift_every: shift every k-th block of a stage; ``None`` = 2 for ResNet-101/152, else 1.
        shift_direction / shift_padding: see :func:`temporalshift.ops.temporal_shift`.
        temporal_pool: max-pool T by 2 before ``layer2`` (T' = T/2 from there on).
        non_local: per stage, a 0/1 flag for each block after which a non-local block is
            inserted, e.g. ``((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))``.
        non_local_mode: ``"dot_product"``, ``"gaussian"`` or ``"embedded_gaussian"``.
        base_width: channels of the stem and ``layer1`` (64 in every published ResNet; smaller
            widths make the fast models of the built-in demo and the tests).

    >>> import torch
    >>> net = ResNet(18, num_segments=4)
    >>> net(torch.zeros(8, 3, 64, 64)).shape
    torch.Size([8, 512, 2, 2])
    """

    def __init__(
        self,
        depth: int = 50,
        num_segments: int = 8,
        shift_div: int = 8,
        shift_place: str = "blockres",
        shift_every: int | None = None,
        shift_direction: str = "bidirectional",
        shift_padding: str = "zero",
        temporal_pool: bool = False,
        non_local: Sequence[Sequence[int]] | None = None,
        non_local_mode: str = "embedded_gaussian",
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        if shift_place not in SHIFT_PLACES:
            raise ValueError(f"shift_place must be one of {SHIFT_PLACES}, got {shift_place!r}")
        kind, stage_blocks = RESNET_DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.depth = depth
        self.num_segments = num_segments
        self.temporal_pool = temporal_pool
        w = base_width
        self.inplanes = w
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w, stage_blocks[0], 1)
        self.layer2 = self._make_layer(block, 2 * w, stage_blocks[1], 2)
        self.layer3 = self._make_layer(block, 4 * w, stage_blocks[2], 2)
        self.layer4 = self._make_layer(block, 8 * w, stage_blocks[3], 2)
        self.out_channels = 8 * w * block.expansion
        self._init_weights()

        if shift_every is None:
            shift_every = 2 if stage_blocks[2] >= 23 else 1
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        # With temporal pooling, layer2..4 see half the frames.
        seg_per_stage = [num_segments] + [num_segments // 2 if temporal_pool else num_segments] * 3
        for stage, segs in zip(stages, seg_per_stage, strict=True):
            for i, blk in enumerate(stage):
                if shift_div > 0 and i % shift_every == 0:
                    blk.shift = TemporalShift(segs, shift_div, shift_direction, shift_padding)
                    blk.shift_place = shift_place
        if non_local is not None:
            if len(non_local) != 4 or any(len(f) != len(s) for f, s in zip(non_local, stages, strict=True)):
                raise ValueError("non_local needs one flag per block of each of the 4 stages")
            for stage, flags, segs in zip(stages, non_local, seg_per_stage, strict=True):
                for blk, flag in zip(stage, flags, strict=True):
                    if flag:
                        blk.non_local = NonLocalBlock(_block_out(blk), segs, non_local_mode)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a model trained from scratch starts where theirs does.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _pool_time(self, x: Tensor) -> Tensor:
        """Max-pool (N*T, C, H, W) over T with kernel 3, stride 2, padding 1 (the TSM paper's)."""
        nt, c, h, w = x.shape
        t = self.num_segments
        x5 = x.view(nt // t, t, c, h, w).transpose(1, 2)
        x5 = F.max_pool3d(x5, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        return x5.transpose(1, 2).reshape(-1, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        if self.temporal_pool:
            x = self._pool_time(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _block_out(blk: nn.Module) -> int:
    last_bn = blk.bn3 if isinstance(blk, Bottleneck) else blk.bn2
    return last_bn.num_features
