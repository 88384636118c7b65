"""Backbones with temporal shifts, the recognizer, and the model zoo."""

from temporalshift.models.recognizer import Recognizer
from temporalshift.models.zoo import ZOO, ModelSpec, create_model, describe, list_models, load_checkpoint

__all__ = ["ZOO", "ModelSpec", "Recognizer", "create_model", "describe", "list_models", "load_checkpoint"]
