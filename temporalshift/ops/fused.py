"""Convolutions that apply their activation, and a block's residual add, while writing the output.

In the inference fast form (:func:`temporalshift.optimize_for_inference`) every convolution is
followed by a ReLU/ReLU6, and the last one of a residual block by ``+= identity`` (and a ReLU).
Done as separate operators, each is one more pass over a full activation tensor. oneDNN, which
runs PyTorch's CPU convolutions, can do them as post-ops of the convolution itself (PyTorch's
``torch.ops.mkldnn._convolution_pointwise`` operators, the ones ``torch.compile`` uses for the
same fusion), with the same results. They also take the weights already reordered into oneDNN's
blocked layout for an input shape, which eager ``F.conv2d`` redoes on every call: each
:class:`FusedConv2d` keeps that reordered copy per input shape it has seen (a few, bounded).
:class:`FusedConv2d` calls them on channels-last CPU tensors in inference and falls back to the
unfused operators everywhere else (autograd, tracing, ONNX export, CUDA, autocast), so a
fast-form model still runs and exports anywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from temporalshift.ops.shift import _is_channels_last, inference_fast_path

ACTIVATIONS: tuple[str, ...] = ("none", "relu", "relu6")
# oneDNN's name and scalars for each activation (ReLU6 is hardtanh on [0, 6])
_ONEDNN_ATTR = {"none": ("none", []), "relu": ("relu", []), "relu6": ("hardtanh", [0.0, 6.0])}


def _onednn_ops_exist() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (
            torch.backends.mkldnn.is_available()
            and ops is not None
            and all(
                hasattr(ops, name)
                for name in ("_convolution_pointwise", "_convolution_pointwise_", "_reorder_convolution_weight")
            )
        )
    except (AttributeError, RuntimeError):
        return False


_HAVE_ONEDNN = _onednn_ops_exist()


def _onednn_failed(err: Exception) -> None:
    """These operators are PyTorch internals: if this PyTorch's differ, fall back for good, once."""
    global _HAVE_ONEDNN
    _HAVE_ONEDNN = False
    warnings.warn(f"oneDNN's fused convolutions failed in this PyTorch ({err}); using unfused ones", stacklevel=3)


# input shapes a conv keeps a packed weight for (a stream, a clip batch, the last partial batch...)
_MAX_PACKED_SHAPES = 4


def _activate(y: Tensor, activation: str) -> Tensor:
    if activation == "relu":
        return F.relu(y)
    if activation == "relu6":
        return F.relu6(y)
    return y


class FusedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (BN already folded in) with its activation fused; same parameters and keys.

    ``forward(x)`` is ``activation(conv(x))``; :meth:`add_into_` is the residual tail
    ``other = relu?(other + conv(x))``, written into ``other``.
    """

    def __init__(self, conv: nn.Conv2d, activation: str = "none") -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if not self.can_wrap(conv):
            raise ValueError("FusedConv2d needs a conv with numeric zero padding")
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=conv.bias is not None, device="meta")  # fmt: skip
        self.weight, self.bias = conv.weight, conv.bias
        self.activation = activation
        self._packed: dict[tuple, Tensor] = {}  # (input shape, weight identity) -> oneDNN-layout weight

    @staticmethod
    def can_wrap(conv: nn.Conv2d) -> bool:
        """The oneDNN operators take numeric zero padding only (no "same", no reflect)."""
        return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)

    def __getstate__(self) -> dict:
        # the packed weights are opaque oneDNN tensors (no storage to copy or pickle): rebuilt on use
        return {**super().__getstate__(), "_packed": {}}

    def _use_onednn(self, x: Tensor) -> bool:
        return (
            _HAVE_ONEDNN
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and x.dtype == self.weight.dtype
            and _is_channels_last(x)
            and not torch.is_autocast_enabled("cpu")
            and inference_fast_path()
        )

    def _packed_for(self, x: Tensor, pack: Callable[[], Tensor], kind: str = "direct") -> Tensor:
        """The weight ``pack()`` builds for ``x``'s shape (and this ``kind`` of convolution), kept
        until the weights change."""
        w = self.weight
        key = (kind, tuple(x.shape), w.data_ptr(), 0 if w.is_inference() else w._version)  # changed: repack
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) >= _MAX_PACKED_SHAPES:
                self._packed.clear()
            packed = self._packed[key] = pack()
        return packed

    def _onednn_args(self, x: Tensor) -> tuple:
        """The fused operators' arguments after the input: the weight packed for ``x``'s shape."""
        conv_args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        packed = self._packed_for(
            x, lambda: torch.ops.mkldnn._reorder_convolution_weight(self.weight, *conv_args, list(x.shape))
        )
        return (packed, self.bias, *conv_args)

    def forward(self, x: Tensor) -> Tensor:
        if self._use_onednn(x):
            attr, scalars = _ONEDNN_ATTR[self.activation]
            try:
                return torch.ops.mkldnn._convolution_pointwise(x, *self._onednn_args(x), attr, scalars, "")
            except (RuntimeError, TypeError) as err:
                _onednn_failed(err)
        return _activate(super().forward(x), self.activation)

    def add_into_(self, other: Tensor, x: Tensor, relu: bool) -> Tensor:
        """``relu?(other + conv(x))`` written into ``other`` (a block's input or identity, which
        nobody reads afterwards); out of place when autograd records or something traces."""
        if self.activation != "none":
            raise ValueError("add_into_ is the residual tail: its conv has no activation of its own")
        if self._use_onednn(x) and _is_channels_last(other):
            try:  # checks its arguments before it writes into other
                return torch.ops.mkldnn._convolution_pointwise_(
                    other, x, *self._onednn_args(x), "add", 1.0, "relu" if relu else None, [], ""
                )
            except (RuntimeError, TypeError) as err:
                _onednn_failed(err)
        out = super().forward(x)
        if inference_fast_path():
            out = other.add_(out)
            return out.relu_() if relu else out
        out = other + out
        return F.relu(out) if relu else out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"
