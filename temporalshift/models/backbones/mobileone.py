"""MobileOne (Vasu et al., CVPR 2023) with temporal shifts and train-time overparameterisation.

Structure and names follow mmpretrain's ``MobileOne`` (``stage0``, ``stage1..4``; each block has
``branch_conv_list``, ``branch_scale``, ``branch_norm``, ``se``; after :meth:`MobileOne.reparameterize`
a single ``branch_reparam`` conv), which mmaction2's ``MobileOneTSM`` builds on. mmaction2 shifts
the *input* of every block ("block" placement: a shift in the residual branch would not survive
the fusion of branches into one conv). ``stage0`` sees 3 channels, where a 1/8 shift moves nothing,
so we give it no shift at all.

A consequence of that design worth knowing: a depth-wise block keeps channel groups apart, so
each (depth-wise, point-wise) pair of shifts moves a group by -2, 0 or +2 frames, and a frame's
output depends only on frames at an even distance from it (tests/test_backbones.py shows it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from temporalshift.ops.shift import TemporalShift

# arch -> widths of the 4 stages, conv branches per block, SE blocks at the end of each stage.
MOBILEONE_ARCHS: dict[str, dict[str, tuple]] = {
    "s0": {"width": (0.75, 1.0, 1.0, 2.0), "branches": (4, 4, 4, 4), "se": (0, 0, 0, 0)},
    "s1": {"width": (1.5, 1.5, 2.0, 2.5), "branches": (1, 1, 1, 1), "se": (0, 0, 0, 0)},
    "s2": {"width": (1.5, 2.0, 2.5, 4.0), "branches": (1, 1, 1, 1), "se": (0, 0, 0, 0)},
    "s3": {"width": (2.0, 2.5, 3.0, 4.0), "branches": (1, 1, 1, 1), "se": (0, 0, 0, 0)},
    "s4": {"width": (3.0, 3.5, 3.5, 4.0), "branches": (1, 1, 1, 1), "se": (0, 0, 5, 1)},
}
_BLOCKS = (2, 8, 10, 1)
_BASE = (64, 128, 256, 512)


def _make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < min_ratio * value else new


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        squeeze = _make_divisible(channels // ratio)
        self.conv1 = nn.Conv2d(channels, squeeze, kernel_size=1)
        self.conv2 = nn.Conv2d(squeeze, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.conv2(F.relu(self.conv1(w))))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, padding: int, groups: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False))
    seq.add_module("norm", nn.BatchNorm2d(cout))
    return seq


def _fuse(kernel: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm into the preceding conv's kernel and a bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class MobileOneBlock(nn.Module):
    """Sum of k x k conv-BN branches, a 1x1 conv-BN "scale" branch and a BN identity branch."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, branches: int, se: bool) -> None:
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride, self.groups = cin, cout, kernel, stride, groups
        self.padding = kernel // 2
        self.se: nn.Module = SqueezeExcite(cout) if se else nn.Identity()
        self.branch_norm = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.branch_scale = _conv_bn(cin, cout, 1, stride, 0, groups) if kernel > 1 else None
        self.branch_conv_list = nn.ModuleList(
            _conv_bn(cin, cout, kernel, stride, self.padding, groups) for _ in range(branches)
        )
        self.branch_reparam: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=True)
        self.shift: TemporalShift | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.shift is not None:
            x = self.shift.shift_owned(x)  # the previous block's output: nobody else reads it
        if self.branch_reparam is not None:
            return self.act(self.se(self.branch_reparam(x)))
        out = self.branch_norm(x) if self.branch_norm is not None else 0
        if self.branch_scale is not None:
            out = out + self.branch_scale(x)
        for branch in self.branch_conv_list:
            out = out + branch(x)
        return self.act(self.se(out))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse all branches into one k x k conv with bias (eval-mode BN statistics)."""
        if self.branch_reparam is not None:
            return
        ref = self.branch_conv_list[0].conv.weight
        kernel = torch.zeros_like(ref)
        bias = torch.zeros(self.cout, dtype=ref.dtype, device=ref.device)
        for branch in self.branch_conv_list:
            k, b = _fuse(branch.conv.weight, branch.norm)
            kernel, bias = kernel + k, bias + b
        if self.branch_scale is not None:
            p = self.kernel // 2
            k, b = _fuse(F.pad(self.branch_scale.conv.weight, [p, p, p, p]), self.branch_scale.norm)
            kernel, bias = kernel + k, bias + b
        if self.branch_norm is not None:
            identity = torch.zeros_like(ref)
            per_group = self.cin // self.groups
            for i in range(self.cin):
                identity[i, i % per_group, self.kernel // 2, self.kernel // 2] = 1
            k, b = _fuse(identity, self.branch_norm)
            kernel, bias = kernel + k, bias + b
        conv = nn.Conv2d(self.cin, self.cout, self.kernel, self.stride, self.padding, groups=self.groups)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.branch_reparam = conv.to(device=ref.device)
        self.branch_norm = self.branch_scale = None
        self.branch_conv_list = nn.ModuleList()


class MobileOne(nn.Module):
    """MobileOne backbone over frames ``(N*T, 3, H, W)`` -> ``(N*T, C, H/32, W/32)``.

    Args:
        arch: ``"s0"`` ... ``"s4"`` (S4: 2048 output channels, SE in the last 6 blocks).
        num_segments: T, frames per clip seen by the shifts.
        shift_div: 1/shift_div of the channels move each way; 0 turns shifts off (TSN).
        shift_direction / shift_padding: see :func:`temporalshift.ops.temporal_shift`.

    >>> import torch
    >>> net = MobileOne("s0", num_segments=2).eval()
    >>> net.reparameterize()(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 1024, 2, 2])
    """

    def __init__(
        self,
        arch: str = "s4",
        num_segments: int = 8,
        shift_div: int = 8,
        shift_direction: str = "bidirectional",
        shift_padding: str = "zero",
    ) -> None:
        super().__init__()
        if arch not in MOBILEONE_ARCHS:
            raise ValueError(f"MobileOne arch must be one of {sorted(MOBILEONE_ARCHS)}, got {arch!r}")
        spec = MOBILEONE_ARCHS[arch]
        self.num_segments = num_segments
        stem = min(64, int(_BASE[0] * spec["width"][0]))
        self.stage0 = MobileOneBlock(3, stem, 3, 2, 1, 1, False)
        cin = stem
        for s in range(4):
            cout = int(_BASE[s] * spec["width"][s])
            blocks: list[nn.Module] = []
            for i in range(_BLOCKS[s]):
                se = i >= _BLOCKS[s] - spec["se"][s]
                stride = 2 if i == 0 else 1
                blocks.append(MobileOneBlock(cin, cin, 3, stride, cin, spec["branches"][s], se))
                blocks.append(MobileOneBlock(cin, cout, 1, 1, 1, spec["branches"][s], se))
                cin = cout
            self.add_module(f"stage{s + 1}", nn.Sequential(*blocks))
        self.out_channels = cin
        self._init_weights()
        if shift_div > 0:
            for blk in self.modules():
                if isinstance(blk, MobileOneBlock) and blk.cin >= shift_div:
                    blk.shift = TemporalShift(num_segments, shift_div, shift_direction, shift_padding)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reparameterize(self) -> MobileOne:
        """Fuse every block's branches into one conv for inference; outputs stay the same."""
        for m in [m for m in self.modules() if isinstance(m, MobileOneBlock)]:
            m.reparameterize()
        return self

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage0(x)
        for s in range(1, 5):
            x = getattr(self, f"stage{s}")(x)
        return x
