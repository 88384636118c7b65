"""2D backbones whose blocks call a parameter-free temporal shift (torchvision key layouts)."""

from temporalshift.models.backbones.mobilenetv2 import MobileNetV2
from temporalshift.models.backbones.mobileone import MobileOne
from temporalshift.models.backbones.non_local import NonLocalBlock
from temporalshift.models.backbones.resnet import ResNet

__all__ = ["MobileNetV2", "MobileOne", "NonLocalBlock", "ResNet"]
