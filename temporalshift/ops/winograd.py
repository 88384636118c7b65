"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3), for the inference fast form.

A 3x3 convolution with stride 1 computes each 4x4 tile of its output from a 6x6 tile of its
input. Winograd's algorithm (Lavin & Gray, CVPR 2016; what cuDNN, oneDNN and NNPACK use) moves
the tile and the filter into a domain where that costs 36 multiply-adds per input-output channel
pair instead of 144. The moves are small fixed linear maps; what is left is 36 independent
``(tiles x C) @ (C x K)`` products, which run as one oneDNN grouped 1x1 convolution (a group per
tile position) on weights transformed and packed once per input shape.

PyTorch's CPU convolutions (oneDNN, direct algorithm) do not offer Winograd, and the NNPACK inside
PyTorch's wheels fails on the AVX-512 machine this was built on, hence this module. On ResNet's
3x3 convolutions with 128 to 512 channels it is 1.3-1.5x faster per convolution on 8 frames, and
the fast form of TSM-R50 is 4% faster end to end at batch 1, 8% at batch 8, TSM-R101 8%
(``benchmarks/winograd.py``, 2 CPU cores); at 64 channels and 56x56 the transforms cost more than
they save, so :func:`temporalshift.optimize_for_inference` uses it from :data:`MIN_CHANNELS`
channels. In fp32 its outputs differ from the direct convolution's by about 1e-5 of their scale.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from temporalshift.ops.fused import FusedConv2d, _is_channels_last

MIN_CHANNELS = 128  # input and output channels from which optimize_for_inference uses it
TILE = 4  # output tile side; the input tile is TILE + 2
_POINTS = (TILE + 2) ** 2
_B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
_CONSTANT = (0, 1, 0, 0, 0, 0)  # A^T's column 1 is all ones: a bias put at point (1, 1) reaches every output
_GROUPED = ([0, 0], [1, 1], [1, 1], _POINTS)  # the products' grouped 1x1 conv: padding, stride, dilation, groups

_WORKS = True


@functools.cache
def _transforms() -> tuple[Tensor, Tensor, Tensor]:
    """The input tile's 36x36 map, the output's 16x36 map and the bias spread, all fp32."""
    b_t, a_t, u = (torch.tensor(m, dtype=torch.float64) for m in (_B_T, _A_T, _CONSTANT))
    return torch.kron(b_t, b_t).float(), torch.kron(a_t, a_t).float(), torch.outer(u, u).reshape(-1).float()


def winograd_weight(weight: Tensor) -> Tensor:
    """``(K, C, 3, 3)`` filters -> ``(36 * K, C, 1, 1)``: each filter as G g G^T (in fp64, then
    back to the weight's dtype), laid out as the grouped 1x1 convolution's weight."""
    k, c = weight.shape[:2]
    g = torch.tensor(_G, dtype=torch.float64)
    u = torch.einsum("ia,kcab,jb->ijkc", g, weight.detach().double(), g)
    return u.reshape(_POINTS * k, c, 1, 1).to(weight.dtype).contiguous()


def _failed(err: Exception) -> None:
    global _WORKS
    _WORKS = False
    warnings.warn(f"Winograd convolutions failed in this PyTorch ({err}); using direct ones", stacklevel=3)


class WinogradConv2d(FusedConv2d):
    """A :class:`FusedConv2d` (3x3, stride 1, padding 1) that runs by Winograd F(4x4, 3x3) in the
    CPU fp32 inference fast path and exactly like a FusedConv2d everywhere else."""

    def __init__(self, conv: nn.Conv2d, activation: str = "none") -> None:
        if not self.suits(conv, min_channels=1):
            raise ValueError("WinogradConv2d needs a 3x3 conv with stride 1, padding 1, dilation 1, groups 1")
        super().__init__(conv, activation)

    @staticmethod
    def suits(conv: nn.Conv2d, min_channels: int | None = None) -> bool:
        """A conv this can replace, wide enough (:data:`MIN_CHANNELS`) that the transforms pay off."""
        return (
            FusedConv2d.can_wrap(conv)
            and tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1)
            and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1
            and min(conv.in_channels, conv.out_channels) >= (MIN_CHANNELS if min_channels is None else min_channels)
        )

    def _use_winograd(self, x: Tensor) -> bool:
        return _WORKS and x.dim() == 4 and x.dtype == torch.float32 and self._use_onednn(x)

    def _tiles(self, x: Tensor) -> Tensor:
        """The convolution plus bias before any activation, as ``(N, th, 4, tw, 4, K)`` output
        tiles (a strided view; th, tw = H / 4, W / 4 rounded up). Each stage drops the tensor
        before it, so at most two of them (each about 2.25x the input) are alive at once."""
        n, c, h, w = x.shape
        k = self.out_channels
        th, tw = -(-h // TILE), -(-w // TILE)
        hp, wp, p = TILE * th + 2, TILE * tw + 2, n * th * tw
        input_map, output_map, spread = _transforms()
        # zero border of 1 (the conv's padding), plus what completes the last tiles
        t = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, wp - w - 1, 1, hp - h - 1))
        t = t.as_strided(
            (n, th, tw, TILE + 2, TILE + 2, c), (hp * wp * c, TILE * wp * c, TILE * c, wp * c, c, 1), t.storage_offset()
        ).reshape(p, _POINTS, c)  # overlapping 6x6 input tiles
        t = torch.matmul(input_map, t)  # (p, 36, c) in the transformed domain
        packed = self._packed_for(
            x,
            lambda: torch.ops.mkldnn._reorder_convolution_weight(
                winograd_weight(self.weight), *_GROUPED, [1, _POINTS * c, p, 1]
            ),
            kind="winograd",
        )
        bias = None if self.bias is None else torch.outer(spread, self.bias).reshape(-1)
        t = torch.ops.mkldnn._convolution_pointwise(
            t.view(1, p, 1, _POINTS * c).permute(0, 3, 1, 2), packed, bias, *_GROUPED, "none", [], ""
        )  # (1, 36 * k, p, 1), channels-last: memory (p, 36, k)
        t = torch.matmul(output_map, t.permute(0, 2, 3, 1).reshape(p, _POINTS, k))  # (p, 16, k)
        return t.view(n, th, tw, TILE, TILE, k).permute(0, 1, 3, 2, 4, 5)

    def _in_place_of(self, x: Tensor, dest: Tensor) -> tuple[Tensor, Tensor]:
        """(result, where it goes): ``dest`` (N, H, W, K) and the tiles, shaped alike."""
        n, _, h, w = x.shape
        y = self._tiles(x)
        th, tw = y.shape[1], y.shape[3]
        if (h, w) == (TILE * th, TILE * tw):
            return y, dest.view(n, th, TILE, tw, TILE, -1)
        return y.reshape(n, TILE * th, TILE * tw, -1)[:, :h, :w], dest  # crop the completed tiles

    def forward(self, x: Tensor) -> Tensor:
        if self._use_winograd(x):
            try:
                shape = (x.shape[0], self.out_channels, *x.shape[2:])
                out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
                y, dest = self._in_place_of(x, out.permute(0, 2, 3, 1))
            except (RuntimeError, TypeError) as err:
                _failed(err)
            else:
                if self.activation == "relu":
                    torch.clamp_min(y, 0.0, out=dest)
                elif self.activation == "relu6":
                    torch.clamp(y, 0.0, 6.0, out=dest)
                else:
                    dest.copy_(y)
                return out
        return super().forward(x)

    def add_into_(self, other: Tensor, x: Tensor, relu: bool) -> Tensor:
        if self.activation == "none" and self._use_winograd(x) and _is_channels_last(other):
            try:
                y, dest = self._in_place_of(x, other.permute(0, 2, 3, 1))
            except (RuntimeError, TypeError) as err:
                _failed(err)
            else:
                dest.add_(y)
                return other.relu_() if relu else other
        return super().add_into_(other, x, relu)
