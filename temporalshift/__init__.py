"""temporalshift: fast, practical video action recognition with the Temporal Shift Module.

>>> import temporalshift as ts
>>> "tsm_r50_1x1x8_k400" in ts.list_models()
True
"""

from temporalshift.models import Recognizer, create_model, list_models, load_checkpoint
from temporalshift.models.complexity import count_flops, count_params
from temporalshift.ops import TemporalShift, temporal_shift

__version__ = "0.1.0"

__all__ = [
    "Recognizer",
    "TemporalShift",
    "__version__",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_checkpoint",
    "temporal_shift",
]
