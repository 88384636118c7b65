"""Parameter and FLOP counts, counted the way the published model zoos count them.

mmaction2 1.x reports FLOPs with mmengine's analyzer, which follows fvcore's convention:

* conv / linear / matmul: one multiply-add = 1 FLOP (bias additions are not counted);
* BatchNorm in eval mode: 2 per element (1 without affine); in training mode 5 (4);
* LayerNorm / GroupNorm / InstanceNorm: 5 per element (4 without affine);
* adaptive average pooling: 1 per *input* element;
* everything else (ReLU, additions, max-pool, softmax, the temporal shift): 0.

We count at the level of ``torch.nn.functional`` calls with a ``TorchFunctionMode`` (the level
fvcore's JIT trace sees), so a composite such as ``adaptive_avg_pool2d`` is counted as itself and
not as the ``mean`` it lowers to. Models can be built on the ``meta`` device: counting then costs
no arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode


def count_params(model: nn.Module) -> int:
    """All parameters, classifier included (how the model zoos count "params").

    >>> count_params(torch.nn.Linear(2048, 400))
    819600
    """
    return sum(p.numel() for p in model.parameters())


def _numel(t: Tensor) -> int:
    return math.prod(t.shape)


def _conv(args: tuple, kwargs: dict, out: Tensor) -> int:
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    return out.shape[0] * math.prod(weight.shape) * math.prod(out.shape[2:])


def _linear(args: tuple, kwargs: dict, out: Tensor) -> int:
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    return _numel(out) * weight.shape[-1]


def _matmul(args: tuple, kwargs: dict, out: Tensor) -> int:
    return _numel(out) * args[0].shape[-1]


def _addmm(args: tuple, kwargs: dict, out: Tensor) -> int:
    return _numel(out) * args[1].shape[-1]


def _batch_norm(args: tuple, kwargs: dict, out: Tensor) -> int:
    names = ("input", "running_mean", "running_var", "weight", "bias", "training")
    bound = {**dict(zip(names, args, strict=False)), **kwargs}
    affine = bound.get("weight") is not None
    if bound.get("training", False):
        return _numel(bound["input"]) * (5 if affine else 4)
    return _numel(bound["input"]) * (2 if affine else 1)


def _norm(args: tuple, kwargs: dict, out: Tensor) -> int:
    affine = kwargs.get("weight") is not None or len(args) > 2 and args[2] is not None
    return _numel(args[0]) * (5 if affine else 4)


def _adaptive_avg_pool(args: tuple, kwargs: dict, out: Tensor) -> int:
    return _numel(args[0])


_RULES: dict[Callable[..., Any], Callable[[tuple, dict, Tensor], int]] = {
    F.conv1d: _conv,
    F.conv2d: _conv,
    F.conv3d: _conv,
    F.linear: _linear,
    torch.matmul: _matmul,
    Tensor.__matmul__: _matmul,
    torch.mm: _matmul,
    torch.bmm: _matmul,
    torch.addmm: _addmm,
    torch.baddbmm: _addmm,
    F.batch_norm: _batch_norm,
    F.layer_norm: _norm,
    F.group_norm: _norm,
    F.instance_norm: _norm,
    F.adaptive_avg_pool1d: _adaptive_avg_pool,
    F.adaptive_avg_pool2d: _adaptive_avg_pool,
    F.adaptive_avg_pool3d: _adaptive_avg_pool,
}


class FlopCounter(TorchFunctionMode):
    """Counts FLOPs (fvcore's convention) of the functional calls made inside the ``with`` block.

    >>> with FlopCounter() as counter:
    ...     _ = torch.nn.Linear(8, 4)(torch.zeros(2, 8))
    >>> counter.total
    64
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = _RULES.get(func)
        if rule is not None:
            self.total += int(rule(args, kwargs, out))
        return out


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: Tensor) -> int:
    """FLOPs of one forward of ``module`` on ``inputs``, in fvcore's convention (see module doc).

    The module is run in eval mode (as the published counts are); every submodule's mode is restored.

    >>> count_flops(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.zeros(1, 3, 4, 4))
    3456
    """
    from temporalshift.models.recognizer import evaluating
    from temporalshift.ops.shift import plain_operators

    with evaluating(module), plain_operators(), FlopCounter() as counter:  # the fast form counts as the plain one
        module(*inputs)
    return counter.total
