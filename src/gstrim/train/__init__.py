
from gstrim.train.densify import DensifyConfig, DensifyStrategy
from gstrim.train.optim import LearningRates
from gstrim.train.strategy import Strategy
from gstrim.train.trainer import TrainConfig, Trainer

__all__ = ["DensifyConfig", "DensifyStrategy", "LearningRates", "Strategy", "TrainConfig", "Trainer"]
