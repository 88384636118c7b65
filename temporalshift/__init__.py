"""temporalshift: fast, practical video action recognition with the Temporal Shift Module.

>>> import temporalshift as ts
>>> "tsm_r50_1x1x8_k400" in ts.list_models()
True
"""

from temporalshift.models import Recognizer, create_model, list_models, load_checkpoint
from temporalshift.models.complexity import count_flops, count_params
from temporalshift.ops import TemporalShift, temporal_shift
from temporalshift.predict import predict  # binds the function over the submodule of the same name
from temporalshift.results import Prediction


def __getattr__(name: str):
    """Heavier entry points load on first use, so `import temporalshift` stays quick."""
    lazy = {
        "OnlineRecognizer": ("temporalshift.online", "OnlineRecognizer"),
        "export_onnx": ("temporalshift.export", "export_onnx"),
        "export_torchscript": ("temporalshift.export", "export_torchscript"),
        "optimize_for_inference": ("temporalshift.performance", "optimize_for_inference"),
        "tune_cpu_allocator": ("temporalshift.performance", "tune_cpu_allocator"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'temporalshift' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "OnlineRecognizer",
    "Prediction",
    "Recognizer",
    "TemporalShift",
    "__version__",
    "count_flops",
    "count_params",
    "create_model",
    "export_onnx",
    "export_torchscript",
    "list_models",
    "load_checkpoint",
    "optimize_for_inference",
    "tune_cpu_allocator",
    "predict",
    "temporal_shift",
]
