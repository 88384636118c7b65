"""Online TSM: recognise a stream one frame at a time with a uni-directional model.

A uni-directional model (``shift_direction="right"``) only moves channels from the past to the
present. So instead of re-running a whole clip, each shift keeps the ``fold`` channels it saw on
the previous frame and hands them to the next one: one 2D forward per frame, and the logits of
frame t are exactly the offline model's frame-t logits on frames 1..t (the authors' online demo
runs MobileNetV2 this way on a Jetson Nano). The mean of the per-frame logits over T frames is
what the offline model returns for that clip.

    rec = OnlineRecognizer(ts.create_model("tsm_mobilenetv2_online_1x1x8_k400"))
    for frame in frames:                      # normalized (3, H, W) tensors
        logits = rec.step(frame)
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings
from collections import deque
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from temporalshift.models.backbones.non_local import NonLocalBlock
from temporalshift.models.recognizer import Recognizer
from temporalshift.ops.shift import TemporalShift, consumable_inputs, inference_fast_path

ENGINES = ("auto", "torch", "onnxruntime")


def onnxruntime_installed() -> bool:
    """Whether the online step can be exported (onnx) and run (onnxruntime): the ``export`` extra."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


class CachedShift(nn.Module):
    """Past -> present shift of single frames: channels ``[0, fold)`` come from the cache.

    ``cache_in`` / ``cache_out`` make the cache an explicit input and output when exporting.
    """

    def __init__(self, shift_div: int) -> None:
        super().__init__()
        self.shift_div = shift_div
        self.cache: Tensor | None = None
        self.cache_in: Tensor | None = None
        self.cache_out: Tensor | None = None
        self.channels: int | None = None

    def call_shifted(self, x: Tensor, fn) -> Tensor:
        return fn(self(x))

    def shift_owned(self, x: Tensor) -> Tensor:
        return self(x)

    def forward(self, x: Tensor) -> Tensor:
        fold = x.shape[1] // self.shift_div
        self.channels = x.shape[1]
        past = self.cache_in if self.cache_in is not None else self.cache
        if past is None or past.shape != x[:, :fold].shape:  # a new stream (or frame size): an empty past
            past = torch.zeros_like(x[:, :fold])
        if inference_fast_path():  # keep x's memory format (cat would turn channels-last into NCHW)
            out = torch.empty_like(x)
            out[:, :fold], out[:, fold:] = past, x[:, fold:]
        else:
            out = torch.cat([past, x[:, fold:]], dim=1)
        self.cache_out = x[:, :fold]
        self.cache = self.cache_out.detach().clone()  # x is consumed by a fused fast-form block
        return out


def _online_copy(model: Recognizer) -> tuple[Recognizer, list[CachedShift]]:
    """A copy of ``model`` whose shifts are :class:`CachedShift` modules (the original is untouched)."""
    for m in model.modules():
        if isinstance(m, TemporalShift) and m.direction != "right":
            raise ValueError(
                f"online recognition needs a uni-directional model (shift_direction='right'), this one shifts "
                f"{m.direction!r}: use e.g. tsm_mobilenetv2_online_1x1x8_k400 or train with "
                "model.overrides.shift_direction=right"
            )
        if isinstance(m, TemporalShift) and m.padding != "zero":
            raise ValueError(
                f"{m.padding} padding wraps a clip's last frame around to its first; a stream has no last "
                "frame, so only shift_padding='zero' runs online"
            )
        if isinstance(m, TemporalShift) and m.num_segments != model.num_segments:
            raise ValueError(
                f"the shifts see groups of {m.num_segments} frames (shift_segments) within clips of "
                f"{model.num_segments}; a stream is one unbroken sequence, so it cannot run online"
            )
        if isinstance(m, NonLocalBlock) or getattr(m, "temporal_pool", False):
            raise ValueError("non-local blocks and temporal pooling look at whole clips: they cannot run online")
    online = copy.deepcopy(model).eval()
    caches = []
    for parent in list(online.modules()):
        shift = getattr(parent, "shift", None)
        if isinstance(shift, TemporalShift):
            parent.shift = CachedShift(shift.shift_div)
            caches.append(parent.shift)
    if not caches:
        raise ValueError("the model has no temporal shift: a TSN needs no online mode")
    return online, caches


class OnlineRecognizer:
    """Stateful frame-by-frame recognizer over a uni-directional TSM.

    Args:
        model: a recognizer built with ``shift_direction="right"``.
        window: frames averaged by :meth:`smoothed` (the prediction shown to a user).
        fast: run :func:`~temporalshift.performance.optimize_for_inference`'s form of the model.
        engine: ``"onnxruntime"`` runs the exported step, ``"torch"`` the PyTorch model; ``"auto"``
            (the default) takes onnxruntime when it is installed (``pip install temporalshift[export]``)
            and the model is on the CPU: it steps MobileNetV2 in about half PyTorch's time there
            (``tsm bench``). :attr:`engine` says which one runs.
        spin: let onnxruntime's threads busy-wait between frames (see :func:`~temporalshift.export.ort_session`).
            Off by default: whatever runs between two frames (decoding, resizing) then competes with
            the spinning threads; in ``tsm stream`` spinning made each frame 23-29 ms instead of 12-14.
    """

    def __init__(
        self, model: Recognizer, window: int = 8, fast: bool = True, engine: str = "auto", spin: bool = False
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        if engine == "auto":
            engine = "onnxruntime" if on_cpu and onnxruntime_installed() else "torch"
        elif engine == "onnxruntime" and not on_cpu:
            raise ValueError("engine='onnxruntime' runs on the CPU: move the model there or use engine='torch'")
        if fast:  # BN folded, fused convs, channels-last: same outputs (1e-4), less time
            from temporalshift.performance import optimize_for_inference

            model = optimize_for_inference(model)
        self.model, self.caches = _online_copy(model)
        self.window = window
        self.recent: deque[Tensor] = deque(maxlen=window)
        self.spec = getattr(model, "spec", None)
        self.session = None
        self.engine = engine
        self._frames_shape: tuple[int, ...] | None = None  # (streams, 3, H, W) of the torch engine's last step
        if engine == "onnxruntime":
            self._start_onnxruntime(model, spin)

    def _start_onnxruntime(self, model: Recognizer, spin: bool, size: tuple[int, int] | None = None) -> None:
        """Run each step through onnxruntime: the step exported for ``size`` frames (the spec's by
        default), its caches passed in and out. A frame of another size exports it again."""
        from pathlib import Path

        from temporalshift.export import ort_session

        self._exported, self._spin = model, spin
        with tempfile.TemporaryDirectory(prefix="tsm-online-") as tmp:  # the session keeps the graph in memory
            path = Path(tmp) / "online_step.onnx"
            export_online_onnx(model, path, check=False, frame_size=size)
            self.session = ort_session(path, spin)
        self._frame_size = tuple(self.session.get_inputs()[0].shape[2:])
        self._cache_names = [i.name for i in self.session.get_inputs()][1:]
        self._state: dict | None = None

    def reset(self) -> None:
        """Forget the past (a new stream)."""
        self._forget_caches()
        self._state = None
        self.recent.clear()

    def _forget_caches(self) -> None:
        for c in self.caches:
            c.cache = None

    @torch.inference_mode()
    def step(self, frame: Tensor) -> Tensor:
        """Logits of one normalized frame ``(3, H, W)`` -> ``(K,)``, or of a batch of streams
        ``(N, 3, H, W)`` -> ``(N, K)``."""
        if frame.dim() not in (3, 4):
            raise ValueError(
                f"step takes one frame (3, H, W) or one frame per stream (N, 3, H, W), got shape {tuple(frame.shape)}"
            )
        single = frame.dim() == 3
        x = frame[None] if single else frame
        if self.session is not None:
            logits = self._step_onnxruntime(x)
        else:
            if tuple(x.shape) != self._frames_shape:  # other streams or another frame size: a new past,
                self._forget_caches()  # as the onnxruntime engine does
                self._frames_shape = tuple(x.shape)
            if getattr(self.model, "channels_last", False):  # as Recognizer.forward does for clips
                x = x.contiguous(memory_format=torch.channels_last)
            with consumable_inputs():  # a private copy of the model: nobody else sees its activations
                logits = self.model.head(self.model.backbone(x), x.shape[0])
        if single:
            logits = logits[0]
        self.recent.append(logits.softmax(-1))
        return logits

    def _step_onnxruntime(self, x: Tensor) -> Tensor:
        import numpy as np

        frame = x.detach().cpu().numpy().astype(np.float32)
        if frame.shape[2:] != self._frame_size:  # frames of another size: a new stream, a new export
            with torch.inference_mode(False):
                self._start_onnxruntime(self._exported, self._spin, frame.shape[2:])
        if self._state is None or next(iter(self._state.values())).shape[0] != frame.shape[0]:
            shapes = {i.name: i.shape for i in self.session.get_inputs()[1:]}
            self._state = {n: np.zeros((frame.shape[0], *shapes[n][1:]), np.float32) for n in self._cache_names}
        outs = self.session.run(None, {"frame": frame, **self._state})
        self._state = dict(zip(self._cache_names, outs[1:], strict=True))
        return torch.from_numpy(outs[0])

    def smoothed(self) -> Tensor:
        """Class probabilities averaged over the last ``window`` frames."""
        if not self.recent:
            raise ValueError("no frame seen yet")
        return torch.stack(list(self.recent)).mean(0)

    def run(self, frames: Iterator[Tensor]) -> Iterator[Tensor]:
        for frame in frames:
            yield self.step(frame)


class OnlineStep(nn.Module):
    """``(frame, *caches) -> (logits, *new_caches)``: the online model with its state explicit,
    for export (as the authors did for their Jetson demo)."""

    def __init__(self, model: Recognizer, example: Tensor) -> None:
        super().__init__()
        self.model, self.caches = _online_copy(model)
        with torch.no_grad():
            self.model.backbone(example)  # learn each cache's shape
        self.cache_shapes = [tuple(c.cache_out.shape[1:]) for c in self.caches]
        for c in self.caches:
            c.cache = None

    def initial_state(self, batch: int = 1) -> list[Tensor]:
        return [torch.zeros(batch, *shape) for shape in self.cache_shapes]

    def forward(self, frame: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        for module, cache in zip(self.caches, caches, strict=True):
            module.cache_in = cache
        logits = self.model.head(self.model.backbone(frame), frame.shape[0])
        out = tuple(module.cache_out for module in self.caches)
        for module in self.caches:
            module.cache_in = None
        return (logits, *out)


def export_online_onnx(
    model: Recognizer, path, check: bool = True, tolerance: float = 1e-4, frame_size: tuple[int, int] | None = None
):
    """ONNX of one online step with the shift caches as explicit inputs/outputs, for frames of
    ``frame_size`` (height, width; the spec's input size by default) and any number of streams;
    checked over a few frames against :class:`OnlineRecognizer`. Returns the largest difference seen."""
    import numpy as np

    from temporalshift.atomic import atomic_path
    from temporalshift.export import ExportReport, ort_session

    spec = model.spec
    height, width = frame_size or (spec.input_size, spec.input_size)
    frame = torch.randn(1, 3, height, width)
    step = OnlineStep(model, frame).eval()  # a copy (the caller's model keeps its mode)
    state = step.initial_state()
    names = [f"cache_{i}" for i in range(len(state))]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        outputs = ["logits", *[n + "_out" for n in names]]
        axes = {n: {0: "streams"} for n in ["frame", *names, *outputs]}  # any number of streams at once
        with atomic_path(path) as tmp:  # the folder made if needed; no half-written file on a failure
            torch.onnx.export(step, (frame, *state), str(tmp), input_names=["frame", *names], output_names=outputs,
                              opset_version=17, dynamic_axes=axes, dynamo=False)  # fmt: skip
    diff = None
    if check:
        session = ort_session(path)
        rec = OnlineRecognizer(model, engine="torch")
        feeds = {n: s.numpy() for n, s in zip(names, state, strict=True)}
        diff = 0.0
        g = torch.Generator().manual_seed(1)
        for _ in range(4):
            f = torch.randn(1, 3, height, width, generator=g)
            outs = session.run(None, {"frame": f.numpy(), **feeds})
            diff = max(diff, float(np.abs(outs[0] - rec.step(f).numpy()).max()))
            feeds = dict(zip(names, outs[1:], strict=True))
        if diff > tolerance:
            raise RuntimeError(f"online ONNX differs from PyTorch by {diff:.2e}")
    return ExportReport(path, "onnx (online step)", diff)
