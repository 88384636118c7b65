"""The temporal shift operator (Lin, Gan & Han, ICCV 2019).

A 2D backbone sees a clip as a batch of frames ``(N*T, C, H, W)``. The shift views it as
``(N, T, C, H, W)`` and moves a few channels one step along T, so neighbouring frames exchange
information at zero FLOPs and zero parameters:

* ``"bidirectional"`` (the paper's default): channels ``[0, fold)`` take the value of the **next**
  frame (t+1 -> t, "shift left"), channels ``[fold, 2*fold)`` the value of the **previous** frame
  (t-1 -> t, "shift right"); the remaining channels stay. This is the authors' and mmaction2's layout.
* ``"left"``: only channels ``[0, fold)`` take frame t+1.
* ``"right"``: only channels ``[0, fold)`` take frame t-1 (past -> present). This is the online,
  uni-directional TSM: the authors' online MobileNetV2 caches exactly these first ``fold`` channels.
* ``"bidirectional_reversed"``: PaddleVideo's order, channels ``[0, fold)`` from t-1 and
  ``[fold, 2*fold)`` from t+1 (needed to run PaddleVideo's weights exactly).

``fold = C // shift_div``. Vacated border frames are zero (``"zero"``) or wrap around
(``"circulant"``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Direction = Literal["bidirectional", "left", "right", "bidirectional_reversed"]
Padding = Literal["zero", "circulant"]
DIRECTIONS: tuple[str, ...] = ("bidirectional", "left", "right", "bidirectional_reversed")
PADDINGS: tuple[str, ...] = ("zero", "circulant")
# A shift step per channel group: (first channel, last channel, step) with step +1 meaning
# "take the value of frame t+1" and -1 "take the value of frame t-1".
_Group = tuple[int, int, int]


def _groups(channels: int, shift_div: int, direction: str) -> list[_Group]:
    fold = channels // shift_div
    if direction == "bidirectional":
        return [(0, fold, +1), (fold, 2 * fold, -1)]
    if direction == "bidirectional_reversed":
        return [(0, fold, -1), (fold, 2 * fold, +1)]
    if direction == "left":
        return [(0, fold, +1)]
    return [(0, fold, -1)]


def _border_frames(step: int) -> tuple[int, int]:
    """(the frame a group's shift drops, the frame it leaves empty): (first, last) when it takes
    frame t+1, (last, first) when it takes t-1. Circulant padding moves the dropped one into the empty one."""
    return (0, -1) if step > 0 else (-1, 0)


def _check_settings(num_segments: int, shift_div: int, direction: str, padding: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    for name, value in (("num_segments", num_segments), ("shift_div", shift_div)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    min_div = 2 if direction.startswith("bidirectional") else 1
    if shift_div < min_div:
        raise ValueError(f"shift_div must be >= {min_div} for a {direction} shift, got {shift_div}")


def _check(x: Tensor, num_segments: int, shift_div: int, direction: str, padding: str) -> None:
    _check_settings(num_segments, shift_div, direction, padding)
    if x.dim() < 2:
        raise ValueError(f"temporal_shift expects (N*T, C, ...), got a tensor of shape {tuple(x.shape)}")
    if x.shape[0] % num_segments != 0:
        raise ValueError(
            f"the batch of {x.shape[0]} frames is not a multiple of num_segments={num_segments}; "
            "feed whole clips of num_segments frames"
        )
    if x.shape[1] < shift_div:
        raise ValueError(f"{x.shape[1]} channels cannot be shifted with shift_div={shift_div} (fold would be 0)")


def _shift_copy(x5: Tensor, groups: list[_Group], padding: str) -> Tensor:
    """Out-of-place shift of ``(N, T, C, ...)`` written with slicing and ``cat`` only.

    Standard operators only, so ONNX and TorchScript export it without a custom op.
    """
    parts: list[Tensor] = []
    start = 0
    for lo, hi, step in groups:
        if lo > start:
            parts.append(x5[:, :, start:lo])
        g = x5[:, :, lo:hi]
        if padding == "circulant":
            # roll by -1 puts frame t+1 at t; by +1 puts frame t-1 at t.
            parts.append(torch.roll(g, shifts=-step, dims=1))
        elif step > 0:
            parts.append(torch.cat([g[:, 1:], torch.zeros_like(g[:, :1])], dim=1))
        else:
            parts.append(torch.cat([torch.zeros_like(g[:, :1]), g[:, :-1]], dim=1))
        start = hi
    if start < x5.shape[2]:
        parts.append(x5[:, :, start:])
    return torch.cat(parts, dim=2)


# Below this many elements per frame slice, two big copies beat T-1 small ones (per-call overhead).
_FRAME_BY_FRAME_MIN = 32768


def _shift_inplace_(x5: Tensor, groups: list[_Group], padding: str) -> None:
    """Shift ``(N, T, C, ...)`` in place.

    Large slices move frame by frame in an order that never overwrites a frame still to be read
    (no temporary, each value moved once); small ones through one temporary of ``T-1`` frames
    (two copy calls instead of ``T-1``). The crossover was measured on ResNet-50's shapes.
    """
    num_t = x5.shape[1]
    for lo, hi, step in groups:
        g = x5[:, :, lo:hi]
        if num_t == 1:
            if padding == "zero":
                g.zero_()
            continue
        lost, vacated = _border_frames(step)
        wrapped = g[:, lost].clone() if padding == "circulant" else None
        if g[:, 0].numel() >= _FRAME_BY_FRAME_MIN:
            order = range(num_t - 1) if step > 0 else range(num_t - 1, 0, -1)
            for t in order:
                g[:, t].copy_(g[:, t + step])
        elif step > 0:  # out[t] = in[t+1]
            g[:, :-1].copy_(g[:, 1:].clone())
        else:  # out[t] = in[t-1]
            g[:, 1:].copy_(g[:, :-1].clone())
        g[:, vacated].copy_(wrapped) if wrapped is not None else g[:, vacated].zero_()


def _reverse(groups: list[_Group]) -> list[_Group]:
    """The adjoint of a shift is the shift the other way (with the same padding)."""
    return [(lo, hi, -step) for lo, hi, step in groups]


def _as_clips(x: Tensor, num_segments: int) -> Tensor:
    return x.view(x.shape[0] // num_segments, num_segments, *x.shape[1:])


class _InplaceShift(torch.autograd.Function):
    """In-place shift whose backward is the reverse shift of the incoming gradient.

    Forward writes into its input (marked dirty so autograd refuses uses that would need the
    old values) and allocates only one channel group's frames, never a full-size copy.
    """

    @staticmethod
    def forward(ctx, x: Tensor, num_segments: int, groups: list, padding: str) -> Tensor:  # type: ignore[override]
        ctx.num_segments, ctx.groups, ctx.padding = num_segments, groups, padding
        _shift_inplace_(_as_clips(x, num_segments), groups, padding)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        # The incoming gradient may be a tensor the caller still owns: shift a copy.
        grad_in = _shift_copy(_as_clips(grad, ctx.num_segments), _reverse(ctx.groups), ctx.padding)
        return grad_in.view_as(grad), None, None, None


def temporal_shift(
    x: Tensor,
    num_segments: int,
    shift_div: int = 8,
    direction: Direction = "bidirectional",
    padding: Padding = "zero",
    inplace: bool = False,
) -> Tensor:
    """Shift a fraction of the channels of ``(N*T, C, ...)`` frames along time.

    Args:
        x: frames of whole clips, ``(N*T, C, ...)``, clip-major (frame t of clip n at ``n*T + t``).
        num_segments: T, the number of frames of one clip.
        shift_div: ``fold = C // shift_div`` channels move each way (8: 1/8 forward, 1/8 backward).
        direction: ``"bidirectional"``, ``"left"`` (from t+1) or ``"right"`` (from t-1, online).
        padding: ``"zero"`` fills the vacated border frames with 0, ``"circulant"`` wraps around.
        inplace: write into ``x`` (no full-size copy); autograd still gets the exact gradient.

    Returns:
        The shifted frames, same shape as ``x`` (``x`` itself when ``inplace``).

    >>> x = torch.arange(2 * 8.0).view(2, 8, 1, 1)   # one clip of T=2 frames, 8 channels
    >>> temporal_shift(x, num_segments=2, shift_div=8)[:, :3, 0, 0]
    tensor([[ 8.,  0.,  2.],
            [ 0.,  1., 10.]])
    """
    _check(x, num_segments, shift_div, direction, padding)
    groups = _groups(x.shape[1], shift_div, direction)
    if inplace:
        return _InplaceShift.apply(x, num_segments, groups, padding)
    return _shift_copy(_as_clips(x, num_segments), groups, padding).view_as(x)


# Measured in the fused fast form on 2 CPU threads: MobileNetV2's groups (3-20 channels) are
# faster copied with x (1.3-1.6x less non-conv time at batch 1 and 8), ResNet-50's (32+) faster
# shifted in place and restored (1.7x less at batch 8)...
_NARROW_GROUP = 32
# ...but only while x is larger than the cache: below this many values (16 MB of float32) the
# copy, which the conv then reads hot from the cache, costs less than the in-place shift and
# restore counted with the conv that runs between them (ResNet-50's layer2-4 inputs at batch 1:
# 0.5-1.1 ms less per block; its 25.7 MB layer1 inputs and everything at batch 8 favour the restore).
_RESTORE_MIN_NUMEL = 4_000_000


def _is_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


# Set by whoever runs a whole backbone and alone sees its activations (Recognizer.forward when no
# forward hook watches a backbone module, the online recognizer's private copy): then in inference
# a block may overwrite its input, the previous block's output, which nobody else reads.
_INPUTS_CONSUMABLE: ContextVar[bool] = ContextVar("temporalshift_inputs_consumable", default=False)


@contextmanager
def _flag(var: ContextVar[bool], value: bool) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def consumable_inputs(enabled: bool = True) -> AbstractContextManager[None]:
    """Inside the block, shifted blocks may consume (overwrite) their inputs in inference."""
    return _flag(_INPUTS_CONSUMABLE, enabled)


def may_consume_inputs() -> bool:
    """True in inference inside :func:`consumable_inputs`: a block called on its own, or with a
    hook watching the tensors, leaves its input as it was."""
    return inference_fast_path() and _INPUTS_CONSUMABLE.get()


# Set while FLOPs are counted: every module runs its plain operators (a fused oneDNN or Winograd
# convolution would hide its multiply-adds from the counter).
_PLAIN_OPERATORS: ContextVar[bool] = ContextVar("temporalshift_plain_operators", default=False)


def plain_operators() -> AbstractContextManager[None]:
    """Inside, every fast path is off: modules call the plain ``torch.nn.functional`` operators."""
    return _flag(_PLAIN_OPERATORS, True)


def inference_fast_path() -> bool:
    """True when no gradient is recorded and nothing traces or compiles the model: then a shift
    may write into its input and undo it afterwards, which saves the full-size copy."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if _PLAIN_OPERATORS.get():
        return False
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    return True


class TemporalShift(nn.Module):
    """Parameter-free shift module that a block calls before its first conv.

    It holds no parameters and no buffers, so a backbone with shifts has exactly the state-dict
    keys of the same backbone without them (torchvision's layout).
    """

    def __init__(
        self,
        num_segments: int,
        shift_div: int = 8,
        direction: Direction = "bidirectional",
        padding: Padding = "zero",
        inplace: bool = False,
    ) -> None:
        super().__init__()
        _check_settings(num_segments, shift_div, direction, padding)
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.direction = direction
        self.padding = padding
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div, self.direction, self.padding, self.inplace)

    def call_shifted(self, x: Tensor, fn) -> Tensor:
        """``fn(shift(x))`` without a full-size copy in inference; ``x`` is left as it was.

        Shifts ``x`` in place, runs ``fn``, then shifts back and restores the one frame per
        channel group that the shift overwrote. Channels-last groups narrower than
        ``_NARROW_GROUP`` channels are short strided runs per pixel, and an ``x`` that fits in the
        cache is read faster by ``fn`` from a fresh copy: there one copy of ``x`` with the groups
        written shifted costs less. In training (or while tracing) it is simply ``fn(self(x))``.
        """
        if not inference_fast_path() or x.shape[1] < self.shift_div:
            return fn(self(x))
        _check(x, self.num_segments, self.shift_div, self.direction, self.padding)
        if _is_channels_last(x) and (x.shape[1] // self.shift_div < _NARROW_GROUP or x.numel() < _RESTORE_MIN_NUMEL):
            return fn(_shifted_copy(x, self))
        with _shifted_in_place(x, self):
            return fn(x)

    def shift_owned(self, x: Tensor) -> Tensor:
        """``shift(x)`` for an ``x`` nobody else reads afterwards: in place when inferring inside
        :func:`consumable_inputs`."""
        if may_consume_inputs() and x.shape[1] >= self.shift_div:
            _check(x, self.num_segments, self.shift_div, self.direction, self.padding)
            _shift_inplace_(_as_clips(x, self.num_segments), _groups(x.shape[1], self.shift_div, self.direction),
                            self.padding)  # fmt: skip
            return x
        return self(x)

    def extra_repr(self) -> str:
        return (
            f"num_segments={self.num_segments}, shift_div={self.shift_div}, "
            f"direction={self.direction!r}, padding={self.padding!r}, inplace={self.inplace}"
        )


# Training keeps no shifted copies (see _ShiftedConv); False restores the naive, copying version
# (the benchmark measures both).
SAVE_SHIFT_MEMORY = True


class _ShiftedConv(torch.autograd.Function):
    """``conv2d(shift(x), weight)`` that keeps no shifted copy for the backward pass.

    The naive version stores ``shift(x)`` (a full-size tensor) for the weight gradient of every
    shifted block. Here the shift is done in place on ``x``'s storage and undone right after the
    convolution, in forward and again in backward; only ``x`` is kept, which autograd holds anyway
    (the residual and the previous activation need it). Writing through ``x.data`` leaves x's
    version counter alone: the values are restored exactly before anyone else reads them.
    """

    @staticmethod
    def forward(ctx, x, weight, shift, conv):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.shift, ctx.conv = shift, conv
        with _shifted_in_place(x.data, shift):
            return F.conv2d(x.data, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        conv, shift = ctx.conv, ctx.shift
        with _shifted_in_place(x.data, shift):
            grad_in, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x.data, weight, None, list(conv.stride), list(conv.padding), list(conv.dilation), False,
                [0, 0], conv.groups, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
            )  # fmt: skip
        if grad_in is not None:  # the gradient of a shift is the shift the other way
            groups = _groups(x.shape[1], shift.shift_div, shift.direction)
            _shift_inplace_(_as_clips(grad_in, shift.num_segments), _reverse(groups), shift.padding)
        return grad_in, grad_w, None, None


class _shifted_in_place:
    """Context manager: ``x`` shifted in place inside, exactly restored on exit."""

    def __init__(self, x: Tensor, shift: TemporalShift) -> None:
        self.x5 = _as_clips(x, shift.num_segments)
        self.groups = _groups(x.shape[1], shift.shift_div, shift.direction)
        self.padding = shift.padding

    def __enter__(self) -> None:
        self.saved = [self.x5[:, _border_frames(step)[0], lo:hi].clone() for lo, hi, step in self.groups]
        _shift_inplace_(self.x5, self.groups, self.padding)

    def __exit__(self, *exc: object) -> None:
        _shift_inplace_(self.x5, _reverse(self.groups), "zero")
        for (lo, hi, step), frame in zip(self.groups, self.saved, strict=True):
            self.x5[:, _border_frames(step)[0], lo:hi] = frame


def shifted_conv2d(x: Tensor, shift: TemporalShift, conv: nn.Conv2d) -> Tensor:
    """``conv(shift(x))`` for a bias-free conv, with the least memory the mode allows.

    Inference: in place, no copy. Training in float32: :class:`_ShiftedConv` (no shifted copy kept
    for backward). Otherwise (autocast, tracing, export): the plain out-of-place shift.
    """
    if inference_fast_path():
        return shift.call_shifted(x, conv)
    plain = (
        not SAVE_SHIFT_MEMORY
        or not torch.is_grad_enabled()  # nothing kept for backward to save (e.g. counting FLOPs)
        or conv.bias is not None
        or x.shape[1] < shift.shift_div
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or torch.is_autocast_enabled(x.device.type)
        or x.dtype != conv.weight.dtype
    )
    if plain:
        return conv(shift(x))
    _check(x, shift.num_segments, shift.shift_div, shift.direction, shift.padding)
    return _ShiftedConv.apply(x, conv.weight, shift, conv)


def _add_unshifted_(out: Tensor, x: Tensor, shift: TemporalShift, lost: list[Tensor]) -> None:
    """``out += x`` as ``x`` was before :func:`_shift_inplace_` shifted it, reading the shifted
    storage at the frame it moved to (and ``lost``, the frame each group dropped)."""
    out5, x5 = _as_clips(out, shift.num_segments), _as_clips(x, shift.num_segments)
    start = 0
    for (lo, hi, step), frame in zip(_groups(x.shape[1], shift.shift_div, shift.direction), lost, strict=True):
        if lo > start:
            out5[:, :, start:lo] += x5[:, :, start:lo]
        o, g = out5[:, :, lo:hi], x5[:, :, lo:hi]
        if step > 0:  # g[t] holds x[t+1]: x[t] sits at t-1, x[0] was dropped
            o[:, 1:] += g[:, :-1]
        else:  # g[t] holds x[t-1]: x[t] sits at t+1, x[T-1] was dropped
            o[:, :-1] += g[:, 1:]
        o[:, _border_frames(step)[0]] += frame
        start = hi
    if start < x.shape[1]:
        out5[:, :, start:] += x5[:, :, start:]


# A whole-tensor copy beats in-place moves of strided slices when the tensor is small (two ops
# instead of dozens). Measured inside the models on 2 CPU threads: MobileNetV2's shifted inputs at
# batch 1 (at most 602,112 values) are faster copied, ResNet-50's (at least 802,816) shifted in place.
_COPY_MAX_NUMEL = 700_000


def _copy_is_cheaper(x: Tensor) -> bool:
    return x.numel() <= _COPY_MAX_NUMEL


@functools.lru_cache(maxsize=64)
def _row_sources(clips: int, num_t: int, channels: int, groups: tuple[_Group, ...], padding: str,
                 device: torch.device) -> tuple[Tensor, Tensor]:  # fmt: skip
    """For a contiguous ``(N*T, C, ...)`` tensor seen as ``N*T*C`` rows (one per frame and
    channel): the row each output row copies, and the rows a zero padding clears."""
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        rows = torch.arange(clips * num_t * channels, device=device).view(clips, num_t, channels)
        source, cleared = rows.clone(), []
        for lo, hi, step in groups:
            lost, vacated = _border_frames(step)
            if step > 0:
                source[:, :-1, lo:hi] = rows[:, 1:, lo:hi]
            else:
                source[:, 1:, lo:hi] = rows[:, :-1, lo:hi]
            source[:, vacated, lo:hi] = rows[:, lost, lo:hi]  # circulant; zero padding clears it
            cleared.append(rows[:, vacated, lo:hi].reshape(-1))
        zero = torch.cat(cleared) if padding == "zero" else rows.new_empty(0)
    return source.view(-1), zero


def _shift_into_(dst5: Tensor, src5: Tensor, groups: list[_Group], padding: str) -> None:
    """Write the shifted channel groups of ``src5`` into ``dst5`` (a copy of it): no overlap, so
    each group is one strided copy."""
    for lo, hi, step in groups:
        d, g = dst5[:, :, lo:hi], src5[:, :, lo:hi]
        if d.shape[1] == 1:  # one frame: circulant leaves it, zero padding clears it
            if padding == "zero":
                d.zero_()
            continue
        if step > 0:
            d[:, :-1] = g[:, 1:]
        else:
            d[:, 1:] = g[:, :-1]
        lost, vacated = _border_frames(step)
        d[:, vacated] = g[:, lost] if padding == "circulant" else 0


def _shifted_copy(x: Tensor, shift: TemporalShift) -> Tensor:
    """``shift(x)`` as one copy of ``x`` (same memory format).

    Contiguous ``x``: each (frame, channel) plane is one row, so the shift is a single row gather
    (``index_select``) plus one fill of the vacated rows: two ops, against a clone and six strided
    writes (1.2-2.4x the time on MobileNetV2's inputs at batch 1). Channels-last ``x`` has no such rows (a
    group is a short run in every pixel): a clone with the groups written shifted.
    """
    groups = _groups(x.shape[1], shift.shift_div, shift.direction)
    if x.is_contiguous() and x.numel() > 0:
        source, zero = _row_sources(x.shape[0] // shift.num_segments, shift.num_segments, x.shape[1],
                                    tuple(groups), shift.padding, x.device)  # fmt: skip
        rows = x.view(x.shape[0] * x.shape[1], -1).index_select(0, source)
        if zero.numel():
            rows.index_fill_(0, zero, 0)
        return rows.view_as(x)
    shifted = x.clone()
    _shift_into_(_as_clips(shifted, shift.num_segments), _as_clips(x, shift.num_segments), groups, shift.padding)
    return shifted


def shifted_residual(
    x: Tensor, shift: nn.Module, conv: nn.Conv2d, rest: Callable[[Tensor], Tensor], identity: Tensor | None = None
) -> Tensor:
    """``rest(conv(shift(x))) + (x if identity is None else identity)``: a residual block whose
    branch starts with a shift, with the least memory traffic the mode allows.

    Inference (a :class:`TemporalShift`) on a large ``x``: ``x`` is *consumed*, like the input of an
    in-place ReLU: it is shifted in place and never restored; the identity path reads the shifted
    storage one frame over, which undoes the shift inside the addition at no extra cost. Blocks call
    this on the previous layer's output, which nobody else reads. On a small ``x`` one copy with
    the groups written shifted is cheaper (``x`` kept). Otherwise (training, or outside
    :func:`consumable_inputs`): :func:`shifted_conv2d`, ``x`` kept.
    """
    if may_consume_inputs() and isinstance(shift, TemporalShift) and x.shape[1] >= shift.shift_div:
        _check(x, shift.num_segments, shift.shift_div, shift.direction, shift.padding)
        groups = _groups(x.shape[1], shift.shift_div, shift.direction)
        x5 = _as_clips(x, shift.num_segments)
        if _copy_is_cheaper(x):
            out = rest(conv(_shifted_copy(x, shift)))
            out += x if identity is None else identity
            return out
        lost = [x5[:, _border_frames(step)[0], lo:hi].clone() for lo, hi, step in groups] if identity is None else []
        _shift_inplace_(x5, groups, shift.padding)
        out = rest(conv(x))
        if identity is None:
            _add_unshifted_(out, x, shift, lost)
        else:
            out += identity
        return out
    out = rest(shifted_conv2d(x, shift, conv))
    return out + (x if identity is None else identity)
