"""Prediction results as objects: labels, scores, top-k, sampled frames and timings."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Prediction:
    """What a model said about one video.

    ``labels``/``scores``/``indices`` hold the top-k classes, best first (scores are probabilities
    averaged over the test views). ``frames`` are the sampled frame indices of each view.
    """

    source: str
    labels: list[str]
    scores: list[float]
    indices: list[int]
    frames: list[list[int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top1(self) -> str | None:
        return self.labels[0] if self.labels else None

    def topk(self, k: int) -> list[tuple[str, float]]:
        return list(zip(self.labels[:k], self.scores[:k], strict=True))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def failed(cls, source: str, error: str) -> Prediction:
        return cls(source, [], [], [], error=error)
