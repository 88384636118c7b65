"""Non-local blocks (Wang et al., CVPR 2018) applied over a clip of 2D feature maps.

The TSM non-local models of mmaction2 insert one of these after selected residual blocks
(``layer2.{0,2}`` and ``layer3.{0,2,4}`` of a ResNet-50). The block sees the whole clip as a 3D
volume ``(N, C, T, H, W)``, so it relates every position of every frame to every other one.
Layout and maths follow mmcv's ``NonLocal3d`` (``sub_sample=True``: keys/values are max-pooled
by 2 in H and W; ``use_scale=False``), with our own plain key names: ``g``, ``theta``, ``phi``,
``conv_out`` and ``bn``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NON_LOCAL_MODES: tuple[str, ...] = ("dot_product", "gaussian", "embedded_gaussian")


class NonLocalBlock(nn.Module):
    """Residual non-local block on frames ``(N*T, C, H, W)`` of clips of ``num_segments`` frames.

    Args:
        in_channels: C.
        num_segments: T, frames per clip (the block attends over T*H*W positions).
        mode: ``"dot_product"`` (affinities divided by their count), ``"gaussian"`` (softmax of
            raw feature products, no embedding convs) or ``"embedded_gaussian"`` (softmax of
            embedded products).
        reduction: inner channels = ``in_channels // reduction``.
        sub_sample: max-pool keys and values by 2 in space, as mmaction2's TSM configs do.
        use_scale: divide embedded-gaussian affinities by sqrt(inner channels).
    """

    def __init__(
        self,
        in_channels: int,
        num_segments: int,
        mode: str = "embedded_gaussian",
        reduction: int = 2,
        sub_sample: bool = True,
        use_scale: bool = False,
    ) -> None:
        super().__init__()
        if mode not in NON_LOCAL_MODES:
            raise ValueError(f"non-local mode must be one of {NON_LOCAL_MODES}, got {mode!r}")
        self.num_segments = num_segments
        self.mode = mode
        self.use_scale = use_scale
        inter = max(in_channels // reduction, 1)
        self.inter_channels = inter
        self.g = nn.Conv3d(in_channels, inter, kernel_size=1)
        if mode != "gaussian":
            self.theta = nn.Conv3d(in_channels, inter, kernel_size=1)
            self.phi = nn.Conv3d(in_channels, inter, kernel_size=1)
        self.conv_out = nn.Conv3d(inter, in_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm3d(in_channels)
        self.pool: nn.Module = nn.MaxPool3d(kernel_size=(1, 2, 2)) if sub_sample else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.01) convs and a zero BN scale, so a new block starts as the identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        nt, c, h, w = x.shape
        n, t = nt // self.num_segments, self.num_segments
        x5 = x.view(n, t, c, h, w).transpose(1, 2)  # (N, C, T, H, W)
        value = self.pool(self.g(x5)).flatten(2).transpose(1, 2)  # (N, L', C')
        if self.mode == "gaussian":
            query = x5.flatten(2).transpose(1, 2)  # (N, L, C)
            key = self.pool(x5).flatten(2)  # (N, C, L')
        else:
            query = self.theta(x5).flatten(2).transpose(1, 2)
            key = self.pool(self.phi(x5)).flatten(2)
        affinity = torch.matmul(query, key)  # (N, L, L')
        if self.mode == "dot_product":
            affinity = affinity / affinity.shape[-1]
        else:
            if self.use_scale:
                affinity = affinity / math.sqrt(query.shape[-1])
            affinity = affinity.softmax(dim=-1)
        y = torch.matmul(affinity, value)  # (N, L, C')
        y = y.transpose(1, 2).reshape(n, self.inter_channels, t, h, w)
        out = x5 + self.bn(self.conv_out(y))
        return out.transpose(1, 2).reshape(nt, c, h, w)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, mode={self.mode!r}"
