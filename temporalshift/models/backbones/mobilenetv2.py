"""MobileNetV2 with temporal shifts, in torchvision's exact module layout.

Keys are torchvision's ``mobilenet_v2`` keys (``features.N...``), so its ImageNet weights (without
``classifier.*``) load with ``strict=True``. As in the authors' code and mmaction2's
``MobileNetV2TSM``, only the inverted-residual blocks with a residual connection are shifted
(``features.3, 5, 6, 8, 9, 10, 12, 13, 15, 16``), inside the residual branch before the first
point-wise conv.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from temporalshift.ops.shift import TemporalShift, inference_fast_path, may_consume_inputs, shifted_residual

# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table 2.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Module:
    return Conv2dNormActivation(cin, cout, kernel_size=kernel, stride=stride, groups=groups, activation_layer=nn.ReLU6)


class InvertedResidual(nn.Module):
    """torchvision's InvertedResidual (``conv`` Sequential) with an optional residual-branch shift."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden))
        layers += [
            _conv_bn_relu6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, kernel_size=1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout
        self.shift: TemporalShift | None = None
        self.fused = False  # set by optimize_for_inference: convs are FusedConv2d, BNs folded

    def forward(self, x: Tensor) -> Tensor:
        if not self.use_res_connect:
            return self.conv(x)
        if self.fused:
            return self._fused_forward(x)
        if self.shift is None:
            return x + self.conv(x)
        # conv[0] is a Conv2dNormActivation (conv, BN, ReLU6): the shift goes before its conv
        return shifted_residual(x, self.shift, self.conv[0][0], self._after_first_conv)

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The fast form's residual block: the projection conv adds its output into ``x`` as it
        writes it (see :mod:`temporalshift.ops.fused`); ``x`` is consumed inside
        :func:`~temporalshift.ops.shift.consumable_inputs`, else copied first."""
        first, *inner, project, _folded_bn = self.conv
        y = first(x) if self.shift is None else self.shift.call_shifted(x, first)  # x restored after
        for layer in inner:
            y = layer(y)
        kept = inference_fast_path() and not may_consume_inputs()  # add_into_ would write into x
        return project.add_into_(x.clone() if kept else x, y, relu=False)

    def _after_first_conv(self, y: Tensor) -> Tensor:
        for layer in [*list(self.conv[0])[1:], *list(self.conv)[1:]]:
            y = layer(y)
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) over frames ``(N*T, 3, H, W)`` -> ``(N*T, 1280, H/32, W/32)``.

    Args:
        num_segments: T, frames per clip seen by the shifts.
        shift_div: 1/shift_div of the channels move each way; 0 turns shifts off (TSN).
        shift_direction / shift_padding: see :func:`temporalshift.ops.temporal_shift`.

    >>> import torch
    >>> MobileNetV2(num_segments=2)(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1280, 2, 2])
    """

    def __init__(
        self,
        num_segments: int = 8,
        shift_div: int = 8,
        shift_direction: str = "bidirectional",
        shift_padding: str = "zero",
    ) -> None:
        super().__init__()
        self.num_segments = num_segments
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, kernel=3, stride=2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu6(cin, 1280))
        self.features = nn.Sequential(*layers)
        self.out_channels = 1280
        self._init_weights()
        if shift_div > 0:
            for blk in self.features:
                if isinstance(blk, InvertedResidual) and blk.use_res_connect:
                    blk.shift = TemporalShift(num_segments, shift_div, shift_direction, shift_padding)

    def _init_weights(self) -> None:
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
