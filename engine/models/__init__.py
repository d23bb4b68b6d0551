"""Backbones (registry :data:`BACKBONES`) and MLP heads described as data."""

from engine.models.heads import (
    equimod_predictor,
    mlp,
    param_encoder,
    projector,
    rotation_head,
    scaled_hidden,
)
from engine.models.resnet import BACKBONES, CIFAR_MEAN, CIFAR_STD, ResNet

__all__ = [
    "BACKBONES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "ResNet",
    "equimod_predictor",
    "mlp",
    "param_encoder",
    "projector",
    "rotation_head",
    "scaled_hidden",
]
