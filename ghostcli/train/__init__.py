"""Training and evaluation: ``train_model`` (fine-tune / distil, single process or DDP) and ``evaluate_model``."""

from ghostcli.train.evaluate import EvalOptions, EvalResult, evaluate_model
from ghostcli.train.loop import EpochRecord, TrainConfig, TrainingInterrupted, TrainResult, train_model

__all__ = ["EpochRecord", "EvalOptions", "EvalResult", "TrainConfig", "TrainResult", "TrainingInterrupted", "evaluate_model",
           "train_model"]
