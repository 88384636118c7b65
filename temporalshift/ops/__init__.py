"""Low-level operators: the temporal shift."""

from temporalshift.ops.shift import TemporalShift, temporal_shift

__all__ = ["TemporalShift", "temporal_shift"]
