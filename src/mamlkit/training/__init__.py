"""Training: the outer loop and everything a run is made of, one file each.

* :mod:`.loop`: :func:`fit` (the outer loop, with :class:`Callback` hooks) and :func:`train_maml`;
* :mod:`.evaluation`: :func:`evaluate`, :func:`eval_run` and :class:`EvalResult`;
* :mod:`.prediction`: :func:`predict`, a trained run adapted to your own images, and
  :class:`Predictions`;
* :mod:`.config`: :class:`TrainConfig` and :class:`EvalConfig` (what a run is);
* :mod:`.build`: building the device, dataset, task stream, learner and schedule of a config;
* :mod:`.schedules`: the outer learning-rate schedule, built alike for every entry point;
* :mod:`.run`: :func:`train_run`, a config trained into a run folder;
* :mod:`.run_folder`: the run folder's files, weights and :func:`load_run`;
* :mod:`.callbacks`: the metrics file, checkpoints with the Ctrl-C stop, process averaging;
* :mod:`.checkpoints`, :mod:`.interrupts`, :mod:`.distributed` (torchrun), :mod:`.telemetry`
  (fingerprints, peak memory, environment) and :mod:`.fits` (regression figures).
"""

from mamlkit.training.build import build_dataset, build_learner, build_sampler, resolve_device
from mamlkit.training.config import EvalConfig, TrainConfig, build_config
from mamlkit.training.evaluation import EvalResult, eval_run, evaluate
from mamlkit.training.loop import Callback, LoopState, fit, train_maml
from mamlkit.training.prediction import Predictions, predict
from mamlkit.training.run import train_run
from mamlkit.training.run_folder import load_run

__all__ = [
    "Callback",
    "EvalConfig",
    "EvalResult",
    "LoopState",
    "Predictions",
    "TrainConfig",
    "build_config",
    "build_dataset",
    "build_learner",
    "build_sampler",
    "eval_run",
    "evaluate",
    "fit",
    "load_run",
    "predict",
    "resolve_device",
    "train_maml",
    "train_run",
]
