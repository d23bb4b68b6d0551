"""Backbones (registry :data:`BACKBONES`) and MLP heads described as data."""

from engine.models.equivariant import EQUIVARIANT_BACKBONES
from engine.models.heads import (
    equimod_predictor,
    mlp,
    param_encoder,
    projector,
    rotation_head,
    scaled_hidden,
)
from engine.models.resnet import BACKBONES, CIFAR_MEAN, CIFAR_STD, ResNet

BACKBONES.update(EQUIVARIANT_BACKBONES)  # resnet18_{c4,d4}[_cifar][_regular]: engine/models/equivariant.py

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
