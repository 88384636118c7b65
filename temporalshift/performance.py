"""Fast inference: the same model and outputs, less work per clip.

:func:`optimize_for_inference` folds every BatchNorm into the convolution before it (a BN in
eval mode is an affine map), fuses MobileOne's branches, has each convolution apply its activation
and a residual block's last convolution add the identity as it writes its output (oneDNN post-ops,
:mod:`temporalshift.ops.fused`), runs wide 3x3 convolutions by Winograd on the CPU
(:mod:`temporalshift.ops.winograd`), switches to channels-last memory where that helps oneDNN/cuDNN,
and leaves a model whose outputs match the original to 1e-4. A fast-form block writes its output
over its input, so the model's intermediate tensors are not kept.
:func:`tune_cpu_allocator` stops glibc from handing activation memory back to the kernel after
every call (the ``tsm`` commands do it for their own process).
"""

from __future__ import annotations

import copy
import ctypes
import os
import platform

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _fold_batchnorms(module: nn.Module) -> None:
    """Replace (conv, bn) pairs by the folded conv and an identity, where the wiring is known."""
    from temporalshift.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

    for m in list(module.modules()):  # a BN already folded is an nn.Identity: left alone
        if isinstance(m, ResNet) and isinstance(m.bn1, nn.BatchNorm2d):
            m.conv1, m.bn1 = fuse_conv_bn_eval(m.conv1, m.bn1), nn.Identity()
        elif isinstance(m, (Bottleneck, BasicBlock)):
            for i in (1, 2, 3):
                conv, bn = getattr(m, f"conv{i}", None), getattr(m, f"bn{i}", None)
                if conv is not None and isinstance(bn, nn.BatchNorm2d):
                    setattr(m, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                    setattr(m, f"bn{i}", nn.Identity())
            if isinstance(m.downsample, nn.Sequential) and isinstance(m.downsample[1], nn.BatchNorm2d):
                m.downsample = fuse_conv_bn_eval(m.downsample[0], m.downsample[1])
        elif isinstance(m, nn.Sequential) and len(m) >= 2:
            # torchvision's Conv2dNormActivation and MobileNetV2's (conv, bn) tails
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    m[i] = fuse_conv_bn_eval(m[i], m[i + 1])
                    m[i + 1] = nn.Identity()


def _fused(conv: nn.Conv2d, activation: str = "none") -> nn.Conv2d:
    """The fast form of one folded conv: Winograd where it pays off (wide 3x3, stride 1), else
    oneDNN's direct convolution; both with the activation fused."""
    from temporalshift.ops.fused import FusedConv2d
    from temporalshift.ops.winograd import WinogradConv2d

    return WinogradConv2d(conv, activation) if WinogradConv2d.suits(conv) else FusedConv2d(conv, activation)


def _fuse_activations(module: nn.Module) -> None:
    """Give every folded conv its activation, and every residual block's last conv the identity
    add (:class:`~temporalshift.ops.fused.FusedConv2d`), where the wiring is known; every other
    2D conv becomes a FusedConv2d without activation (for its packed weights). Wide 3x3 convs
    run by Winograd (:mod:`temporalshift.ops.winograd`)."""
    from temporalshift.models.backbones.mobilenetv2 import InvertedResidual
    from temporalshift.models.backbones.mobileone import MobileOneBlock
    from temporalshift.models.backbones.resnet import ResNet, _ShiftBlock
    from temporalshift.ops.fused import FusedConv2d

    for m in list(module.modules()):
        if isinstance(m, ResNet) and isinstance(m.bn1, nn.Identity):  # the stem: conv, (BN), ReLU
            m.conv1, m.relu = _fused(m.conv1, "relu"), nn.Identity()
        elif isinstance(m, _ShiftBlock) and all(
            isinstance(getattr(m, "bn" + n[4:]), nn.Identity) for n in m.conv_names
        ):
            *inner, last = m.conv_names
            for name in inner:
                setattr(m, name, _fused(getattr(m, name), "relu"))
            setattr(m, last, _fused(getattr(m, last)))
            m.fused = True
        elif isinstance(m, InvertedResidual) and m.use_res_connect and isinstance(m.conv[-1], nn.Identity):
            m.conv[-2] = _fused(m.conv[-2])
            m.fused = True
        elif isinstance(m, MobileOneBlock) and m.branch_reparam is not None and isinstance(m.se, nn.Identity):
            m.branch_reparam, m.act = _fused(m.branch_reparam, "relu"), nn.Identity()
        elif isinstance(m, nn.Sequential):  # (conv, folded BN, ReLU/ReLU6): Conv2dNormActivation
            for i in range(len(m) - 2):
                conv, bn, act = m[i], m[i + 1], m[i + 2]
                if type(conv) is nn.Conv2d and isinstance(bn, nn.Identity) and isinstance(act, (nn.ReLU, nn.ReLU6)):
                    m[i] = _fused(conv, "relu6" if isinstance(act, nn.ReLU6) else "relu")
                    m[i + 2] = nn.Identity()
    for m in list(module.modules()):  # the other convs still gain the packed weights
        for name, child in m.named_children():
            if type(child) is nn.Conv2d and FusedConv2d.can_wrap(child):
                setattr(m, name, _fused(child))


def to_channels_last(model: nn.Module) -> nn.Module:
    """NHWC weights for every 2D conv (the non-local blocks' 3D convs stay) and NHWC frames in."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    model.channels_last = True
    return model


@torch.no_grad()
def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` for inference only: BN folded, branches fused, activations and residual
    adds fused into the convolutions, wide 3x3 convolutions by Winograd, channels-last.

    Same ``(N, T, 3, H, W)`` input and the same outputs (to 1e-4). The original is untouched.

    >>> import temporalshift as ts
    >>> fast = optimize_for_inference(ts.create_model("tsm_mobilenetv2_1x1x8_k400").eval())
    >>> sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    0
    """
    from temporalshift.ops.fused import FusedConv2d

    fast = copy.deepcopy(model).eval()
    if any(isinstance(m, FusedConv2d) for m in fast.modules()):  # already the fast form
        return to_channels_last(fast) if channels_last else fast
    if hasattr(fast, "reparameterize"):
        fast.reparameterize()
    _fold_batchnorms(fast)
    _fuse_activations(fast)
    if channels_last:
        to_channels_last(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process for reuse (glibc malloc; a no-op elsewhere).

    By default glibc serves every block over 128 KB-32 MB with a fresh ``mmap`` and trims its heap
    when the top is free, so each forward pass of a video model page-faults its activations in
    again and the kernel zeroes them: up to 1.8x slower at batch 8 on CPUs (measured by ``tsm
    bench``). This is what the jemalloc/tcmalloc advice for PyTorch on CPUs fixes, without
    ``LD_PRELOAD``. The cost: the process keeps its peak memory until it exits. It changes the
    whole process, so the library never calls it on import; the ``tsm`` commands call it unless
    ``TSM_DEFAULT_MALLOC=1`` is set. Returns whether the settings were applied.
    """
    if os.environ.get("TSM_DEFAULT_MALLOC") == "1" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # never trim the heap's free top, and take large blocks from the heap rather than mmap
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30)) and bool(libc.mallopt(_M_MMAP_MAX, 0))
