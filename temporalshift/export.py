"""Export to ONNX and TorchScript, checked against PyTorch on a random clip.

The exported graph takes the same normalized ``(N, T, 3, H, W)`` clip as the PyTorch model and
returns its logits. The temporal shift is slicing and concatenation, so no custom operator is
needed anywhere. The ONNX file carries the zoo name and overrides of its model in its metadata,
so ``tsm predict --onnx`` can rebuild the preprocessing and class names from the file alone.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from temporalshift.atomic import atomic_path
from temporalshift.models.recognizer import evaluating
from temporalshift.models.zoo import ModelSpec, get_spec, spec_overrides

METADATA_KEY = "temporalshift"


@dataclass
class ExportReport:
    path: Path
    format: str
    max_abs_diff: float | None

    def __str__(self) -> str:
        diff = "unchecked" if self.max_abs_diff is None else f"max |difference| vs PyTorch {self.max_abs_diff:.2e}"
        return f"{self.format} model written to {self.path} ({diff})"


def _example(model: nn.Module, batch: int = 1, seed: int = 0) -> torch.Tensor:
    spec: ModelSpec = model.spec
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.num_segments, 3, spec.input_size, spec.input_size, generator=g)


def _in_eval_mode(export: Callable) -> Callable:
    """Exports trace the model in eval mode and leave every submodule in the mode it was in (a model
    being trained stays in training, a frozen part stays frozen)."""

    @functools.wraps(export)
    def wrapper(model: nn.Module, *args, **kwargs):
        with evaluating(model):
            return export(model, *args, **kwargs)

    return wrapper


@_in_eval_mode
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    dynamic_batch: bool = False,
    opset: int = 17,
    check: bool = True,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Write ``model`` as ONNX (opset >= 17) and compare onnxruntime with PyTorch on a random clip."""
    try:
        import onnx
    except ImportError:
        raise ValueError("ONNX export needs `pip install temporalshift[export]` (onnx, onnxruntime)") from None
    path = Path(path)
    example = _example(model)
    axes = {"clip": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants: expected
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter, chosen on purpose
            # The TorchScript-based exporter writes one self-contained file and handles the slicing of
            # the shift; the dynamo exporter would also need onnxscript.
            torch.onnx.export(model, (example,), str(tmp), input_names=["clip"], output_names=["logits"],
                              opset_version=opset, dynamic_axes=axes, dynamo=False)  # fmt: skip
        proto = onnx.load(str(tmp))
        meta = proto.metadata_props.add()
        meta.key = METADATA_KEY
        meta.value = json.dumps({"model_name": getattr(model, "name", None), "overrides": spec_overrides(model)})
        onnx.save(proto, str(tmp))
    diff = None
    if check:
        session, _ = load_onnx(path)
        batch = 2 if dynamic_batch else 1
        clip = _example(model, batch, seed=1)
        with torch.no_grad():
            expected = model(clip).numpy()
        got = session.run(None, {"clip": clip.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        if diff > tolerance:
            raise RuntimeError(f"ONNX output differs from PyTorch by {diff:.2e} (> {tolerance:g})")
    return ExportReport(path, "onnx", diff)


def ort_session(path: str | os.PathLike[str], spin: bool = True):
    """An onnxruntime CPU session with PyTorch's thread count.

    ``spin=False`` stops its threads from busy-waiting for the next run: needed when PyTorch works
    in the same process (benchmarks, a torch model beside an ONNX one), where spinning threads would
    take the cores PyTorch's threads need (measured: a torch step 2-3x slower right after an ORT run).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("running ONNX models needs `pip install onnxruntime`") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types (InvalidProtobuf, Fail...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not an ONNX model onnxruntime can load ({first[:200]})") from None


def load_onnx(path: str | os.PathLike[str], spin: bool = True):
    """An onnxruntime session for an exported model, and the spec stored in its metadata."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    session = ort_session(path, spin)
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if meta is None and any(i.name.startswith("cache_") for i in session.get_inputs()):
        raise ValueError(f"{path} is an online step (tsm export --online): it runs frame by frame with its "
                         "caches (tsm stream, or your own loop), not on whole clips")  # fmt: skip
    if meta is None:
        raise ValueError(f"{path} was not exported by temporalshift (no '{METADATA_KEY}' metadata)")
    info = json.loads(meta)
    return session, get_spec(info["model_name"], **info["overrides"])


@_in_eval_mode
def export_torchscript(
    model: nn.Module, path: str | os.PathLike[str], check: bool = True, tolerance: float = 1e-4
) -> ExportReport:
    """Trace ``model`` to TorchScript (batch size stays free) and compare it with PyTorch."""
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.14 marks TorchScript deprecated; it is still what many C++/mobile runtimes load.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (_example(model),), check_trace=False)
    extra = {"temporalshift.json": json.dumps({"model_name": getattr(model, "name", None),
                                               "overrides": spec_overrides(model)})}  # fmt: skip
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    diff = None
    if check:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(path))
        clip = _example(model, 2, seed=1)
        with torch.no_grad():
            diff = float((loaded(clip) - model(clip)).abs().max())
        if diff > tolerance:
            raise RuntimeError(f"TorchScript output differs from PyTorch by {diff:.2e} (> {tolerance:g})")
    return ExportReport(path, "torchscript", diff)
