"""Training: the optimisation loop, its strategies (3DGS densification), checkpoints, vanilla 3DGS."""

from gstrim.train.densify import DensifyConfig, DensifyStrategy
from gstrim.train.optim import LearningRates
from gstrim.train.strategy import Strategy
from gstrim.train.trainer import TrainConfig, Trainer
from gstrim.train.vanilla import TrainResult, train_model

__all__ = ["DensifyConfig", "DensifyStrategy", "LearningRates", "Strategy", "TrainConfig", "TrainResult",
           "Trainer", "train_model"]
