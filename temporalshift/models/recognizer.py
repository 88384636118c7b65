"""The recognizer: a 2D backbone with shifts, a classifier, and average consensus over time.

``(N, T, 3, H, W)`` clips are folded into ``N*T`` frames for the backbone; every frame's pooled
feature is classified and the ``T`` frame scores of a clip are averaged (TSN's "average
consensus", which TSM keeps). TSN is the same recognizer over a backbone with shifts off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from temporalshift.models.backbones.non_local import NonLocalBlock
from temporalshift.ops.shift import TemporalShift, consumable_inputs, inference_fast_path

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside; afterwards every submodule is back in its own mode (a frozen
    backbone under a training head stays frozen, which ``module.train(was_training)`` would undo)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def _watched(backbone: nn.Module) -> bool:
    """Whether a forward hook (or pre-hook) may keep a backbone's activation: then no block may
    overwrite its input, which such a hook can hold (feature extraction). About 0.1 ms per call."""
    hooks = nn.modules.module
    if getattr(hooks, "_global_forward_hooks", None) or getattr(hooks, "_global_forward_pre_hooks", None):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in backbone.modules())


class ClsHead(nn.Module):
    """Spatial average pool -> dropout -> linear classifier, per frame.

    The classifier starts at N(0, ``init_std``) weights and zero bias (0.001 in the published
    TSM recipes), so a new head barely perturbs a pretrained backbone.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5, init_std: float = 0.001):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.fc.weight, mean=0.0, std=self.init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor, num_clips: int) -> Tensor:
        x = self.pool(features).flatten(1)
        scores = self.fc(self.dropout(x))
        return scores.view(num_clips, -1, scores.shape[-1]).mean(dim=1)


class Recognizer(nn.Module):
    """Clip classifier: ``(N, T, 3, H, W)`` normalized frames -> ``(N, num_classes)`` logits.

    Args:
        backbone: a module mapping ``(N*T, 3, H, W)`` to ``(N*T', C, h, w)`` with ``out_channels``.
        num_classes: classifier outputs.
        num_segments: T, the frames per clip the model was configured (and trained) for.
        dropout: dropout before the classifier.
        init_std: std of the classifier's initial weights.
        partial_bn: in training mode, freeze every BatchNorm but the first (statistics and affine),
            the TSN/TSM recipe for fine-tuning on small datasets.

    >>> import torch
    >>> from temporalshift.models.backbones.resnet import ResNet
    >>> model = Recognizer(ResNet(18, num_segments=4), num_classes=5, num_segments=4)
    >>> model(torch.zeros(2, 4, 3, 64, 64)).shape
    torch.Size([2, 5])
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        num_segments: int,
        dropout: float = 0.5,
        init_std: float = 0.001,
        partial_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClsHead(backbone.out_channels, num_classes, dropout, init_std)
        self.num_classes = num_classes
        self.num_segments = num_segments
        self.partial_bn = partial_bn
        self.channels_last = False  # feed the backbone NHWC frames (set with model.to(memory_format=...))
        # Shifts, non-local blocks and temporal pooling tie the model to clips of T frames.
        self.temporal = any(isinstance(m, (TemporalShift, NonLocalBlock)) for m in backbone.modules()) or bool(
            getattr(backbone, "temporal_pool", False)
        )

    def forward(self, clip: Tensor) -> Tensor:
        if clip.dim() != 5:
            raise ValueError(f"expected a clip batch (N, T, C, H, W), got a tensor of shape {tuple(clip.shape)}")
        if not clip.is_floating_point():
            raise TypeError(
                f"expected a float clip (normalized frames), got {clip.dtype}; "
                "temporalshift.data.transforms.normalize makes one"
            )
        if clip.shape[0] == 0:
            raise ValueError("the batch holds no clip (N=0)")
        if self.temporal and clip.shape[1] != self.num_segments:
            raise ValueError(
                f"this model models time over clips of {self.num_segments} frames, "
                f"got clips of {clip.shape[1]}; sample {self.num_segments} frames per clip"
            )
        frames = clip.flatten(0, 1)
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        if inference_fast_path() and not _watched(self.backbone):
            with consumable_inputs():  # each block may overwrite its input, nobody else reads it
                features = self.backbone(frames)
        else:
            features = self.backbone(frames)
        return self.head(features, clip.shape[0])

    def train(self, mode: bool = True) -> Recognizer:
        super().train(mode)
        if mode and self.partial_bn:
            norms = [m for m in self.backbone.modules() if isinstance(m, _NORMS)]
            for m in norms[1:]:
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)
        return self

    def set_partial_bn(self, enabled: bool) -> None:
        """Switch partial BN on or off; turning it off makes every BN trainable again."""
        self.partial_bn = enabled
        if not enabled:
            for m in self.backbone.modules():
                if isinstance(m, _NORMS):
                    for p in m.parameters():
                        p.requires_grad_(True)
        self.train(self.training)

    @torch.no_grad()
    def reparameterize(self) -> Recognizer:
        """Fuse train-time branches of the backbone (MobileOne) for inference; a no-op otherwise."""
        fuse = getattr(self.backbone, "reparameterize", None)
        if fuse is not None:
            fuse()
        return self
