"""EnhanceNet's perceptual network: a VGG-style digit classifier, trained once and frozen, whose feature maps
EnhanceNet's perceptual (L_P) and texture (L_T) losses compare.

The paper takes VGG-19 trained on ImageNet: a network that was not trained on the images it super-resolves and is
not the one that scores them. ImageNet weights cannot be downloaded here, so this one learns the training digits,
but it is kept apart from the evaluator that scores every model: VGG's plain conv + ReLU layers with no
BatchNorm, its own weights and training (its params section) and its own stage. Were the evaluator the loss
network, EnhanceNet's FD-evaluator and evaluator accuracy would measure the very features its loss matched.
Training (cross-entropy, random shifts) is the evaluator's; only the layers differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from genzoo.models import evaluator
from genzoo.params import param


@dataclass
class Config(evaluator.Config):
    dropout: float = param(0.5, ge=0, le=1)  # VGG's


class Model(evaluator.Model):
    Config = Config
    batchnorm = False
