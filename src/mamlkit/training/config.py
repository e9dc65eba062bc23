"""Run configuration: one typed dataclass, filled from defaults, a YAML file, then CLI flags.

Every run saves its resolved config (``config.yaml``), so a run can be rebuilt for evaluation and
reproduced. Unknown keys and wrong types are errors with a hint, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mamlkit.algorithms import DEFAULT_ALGORITHM, OUTER_LR_SCHEDULES, resolve_algorithm
from mamlkit.algorithms.mamlpp import FIRST_ORDER_ITERATIONS, MSL_ANNEAL_ITERATIONS
from mamlkit.backends import EXECUTIONS
from mamlkit.data import DATASETS
from mamlkit.data.augment import augmentation_names
from mamlkit.data.omniglot import SPLIT_PROTOCOLS
from mamlkit.errors import ConfigError
from mamlkit.learner import DEFAULT_INNER_LR, DEFAULT_INNER_STEPS
from mamlkit.models import parse_model
from mamlkit.registry import UnknownNameError
from mamlkit.training.schedules import DEFAULT_OUTER_LR_MIN
from mamlkit.vocabulary import TaskKind

#: How a task's classes are drawn (``episodes``): from the whole split, or all from one alphabet.
EPISODES: tuple[str, ...] = ("any", "within_alphabet")

#: Where a run's metrics go (``logger``, comma-separated): ``metrics.jsonl`` is always written
#: (resume and ``mamlkit compare`` read it); ``csv`` adds ``metrics.csv`` and ``validation.csv``,
#: ``tensorboard`` adds TensorBoard event files (the ``mamlkit[tensorboard]`` extra).
LOGGERS: tuple[str, ...] = ("jsonl", "csv", "tensorboard")


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that defines a meta-training run (saved as ``config.yaml`` in the run folder).

    One field per ``mamlkit train`` flag (``meta_batch`` is ``--meta-batch``; each field's
    ``help`` metadata is the flag's help text). Construction type- and range-checks every field
    and looks up the algorithm, dataset and model names, so a bad config fails before any data
    is read. Build one from layers of mappings (a YAML file, then flags) with
    :func:`build_config`; :func:`mamlkit.training.train_run` runs it.

    >>> from mamlkit.training import TrainConfig
    >>> config = TrainConfig(algorithm="fomaml", ways=20, shots=5)
    >>> config.algorithm, config.ways, config.queries
    ('fomaml', 20, 15)
    >>> TrainConfig(ways=0)
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: ways must be >= 1, got 0
    >>> TrainConfig(model="conv5")
    Traceback (most recent call last):
        ...
    mamlkit.registry.UnknownNameError: unknown model 'conv5'; did you mean 'conv4'? ...
    """

    algorithm: str = _option(
        DEFAULT_ALGORITHM,
        "algorithm: a name (mamlkit list shows them), a variant NAME[setting=value,...], or "
        "package.module:spec",
    )
    dataset: str = _option(
        "omniglot", "dataset: a name (mamlkit list shows them) or package.module:factory"
    )
    model: str | None = _option(
        None,
        "model: a name (mamlkit list shows them), a variant NAME[option=value,...] such as "
        "conv4[downsample=stride] (Finn et al.'s strided Omniglot network), or "
        "package.module:factory (default: the dataset's, conv4 for images, mlp for sinusoid)",
    )
    ways: int = _option(5, "classes per task (N)")
    shots: int = _option(1, "support examples per class (K)")
    queries: int = _option(15, "query examples per class during meta-training")
    inner_steps: int = _option(DEFAULT_INNER_STEPS, "inner gradient steps during meta-training")
    inner_lr: float = _option(DEFAULT_INNER_LR, "inner learning rate (initial value when learned)")
    meta_batch: int = _option(32, "tasks per outer step")
    outer_lr: float = _option(0.001, "Adam learning rate of the outer loop")
    iterations: int = _option(1000, "outer steps")
    outer_lr_schedule: str | None = _option(
        None,
        "outer learning-rate schedule: constant or cosine (annealed to outer_lr_min); default: "
        "the algorithm's (cosine for the MAML++ presets, else constant)",
    )
    outer_lr_min: float = _option(
        DEFAULT_OUTER_LR_MIN, "final outer learning rate of the cosine schedule"
    )
    msl_anneal_iterations: int = _option(
        MSL_ANNEAL_ITERATIONS,
        "MAML++ multi-step loss: iterations until only the last step counts",
    )
    first_order_iterations: int = _option(
        FIRST_ORDER_ITERATIONS,
        "MAML++ derivative-order annealing: first-order iterations before second order starts "
        "(0: off, second order throughout, as in the paper's released configs)",
    )
    hidden: int = _option(
        64,
        "width of the model: filters per conv layer (conv4; resnet12's first block), units per "
        "hidden layer (mlp)",
    )
    seed: int = _option(0, "seed of the weights and of the training task stream")
    split_seed: int = _option(0, "seed of the class split (keep 0 for the standard split)")
    omniglot_split: str = _option(
        "vinyals",
        "Omniglot character split: vinyals (all 1623 characters shuffled with --split-seed: 1200 "
        "train / 423 test, as Vinyals et al. 2016 and Finn et al. 2017) or lake (Lake et al. "
        "2015: the 30 background alphabets train, the 20 evaluation alphabets test: 964 / 659)",
    )
    episodes: str = _option(
        "any",
        "how a task's N classes are drawn, in training and evaluation: any (uniformly from the "
        "split) or within_alphabet (N distinct characters of one alphabet, as in Lake et al.'s "
        "one-shot tasks; needs a dataset with alphabets, i.e. omniglot)",
    )
    image_size: int | None = _option(
        None,
        "side of the square images the dataset resizes to (default: the dataset's: omniglot 28, "
        "miniimagenet 84, folder 84 with rgb or 28 with grayscale)",
    )
    channels: str | None = _option(
        None, "colour of the folder dataset's images: rgb (the default) or grayscale"
    )
    augment: str | None = _option(
        None,
        "augment the images of the training tasks (never validation or test tasks), "
        "comma-separated: flip (random horizontal flip), crop (random shift: zero-pad by a "
        "side // 8 and crop back), rot90 (random rotation by a multiple of 90 degrees); drawn "
        "from the --seed task stream, so runs stay reproducible (default: none)",
    )
    augment_sets: str = _option(
        "support,query",
        "which images of a training task --augment transforms: support,query (both), support "
        "or query",
    )
    validation: bool = _option(
        False,
        "hold out a validation split (Omniglot: 1100/100/423 characters; 883/81/659, 5 "
        "background alphabets held out, with --omniglot-split lake) and evaluate on it "
        "during training (see --eval-every); the best weights are kept as model.best.safetensors",
    )
    eval_every: int | None = _option(
        None,
        "iterations between validation evaluations (needs --validation; default: a tenth of the "
        "run, at least 1)",
    )
    validation_tasks: int = _option(
        200, "validation tasks per evaluation (the same tasks every time; needs --validation)"
    )
    validation_steps: int | None = _option(
        None, "inner steps at validation (default: --inner-steps; needs --validation)"
    )
    patience: int | None = _option(
        None,
        "stop training after this many validation evaluations without improvement (needs "
        "--validation; default: never)",
    )
    budget_minutes: float | None = _option(
        None,
        "stop training when its training time reaches this many minutes (validation and "
        "checkpoint time not counted); the iterations reached are recorded in summary.json",
    )
    device: str = _option("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    threads: int | None = _option(None, "torch CPU threads (default: torch's choice)")
    execution: str = _option(
        "auto", "how tasks run: auto, batched (all tasks in one program) or loop (one by one)"
    )
    tasks_per_backward: int | None = _option(
        None,
        "backpropagate this many tasks at a time to bound memory (default on CPU: 8, one by one "
        "under the loop strategy; all at once on CUDA)",
    )
    data_root: str | None = _option(None, "data folder (default $MAMLKIT_DATA or ~/.cache/mamlkit)")
    download: bool = _option(False, "download missing data archives")
    log_every: int = _option(10, "iterations between metrics.jsonl records")
    logger: str = _option(
        "jsonl",
        "where the metrics go, comma-separated: jsonl (metrics.jsonl, always written), csv "
        "(metrics.csv and validation.csv), tensorboard (event files in tensorboard/; needs pip "
        "install 'mamlkit[tensorboard]')",
    )
    checkpoint_every: int = _option(
        100,
        "iterations between checkpoints (checkpoint.safetensors; one is also written at the end)",
    )
    progress: bool = _option(True, "show progress bars")

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (what ``config.yaml`` and ``summary.json`` record)."""
        return dataclasses.asdict(self)


@dataclass
class EvalConfig:
    """How a trained run is evaluated: on ``tasks`` tasks of ``split`` drawn with ``seed``.

    The ``mamlkit eval`` flags; :func:`mamlkit.training.eval_run` takes it. Fields are checked like
    :class:`TrainConfig`'s. ``inner_steps=None`` adapts with as many steps as the run trained.
    ``ways``, ``shots`` and ``inner_lr`` (:data:`TEST_OVERRIDES`) test the run on other tasks or
    with another fixed inner learning rate than it trained with; ``None`` keeps the run's, and
    :func:`mamlkit.training.evaluation.evaluated_config` refuses those a run cannot honour.

    >>> from mamlkit.training.config import EvalConfig
    >>> EvalConfig(tasks=100)
    EvalConfig(tasks=100, inner_steps=None, queries=15, seed=0, meta_batch=25, split='test',
               weights='auto', ways=None, shots=None, inner_lr=None)
    >>> EvalConfig(tasks=100, shots=5).to_dict()["shots"]
    5
    """

    tasks: int = _option(600, "test tasks")
    inner_steps: int | None = _option(
        None, "inner steps at test time (default: the training value)"
    )
    queries: int = _option(15, "query examples per class")
    seed: int = _option(0, "seed of the test task stream")
    meta_batch: int = _option(25, "tasks evaluated at once")
    split: str = _option("test", "split to evaluate on")
    weights: str = _option(
        "auto",
        "weights to test: best (kept by a run with --validation), final, or auto (the best when "
        "the run kept them, else the final ones)",
    )
    ways: int | None = _option(
        None,
        "classes per test task (default: the run's; a classifier has one output per trained "
        "class, so only the run's value is accepted; not for regression)",
    )
    shots: int | None = _option(
        None,
        "support examples per class of a test task, support points per task for regression "
        "(default: the run's)",
    )
    inner_lr: float | None = _option(
        None,
        "inner learning rate at test time (default: the run's); refused for an algorithm that "
        "learns its inner rates (metasgd, mamlpp, fomamlpp), whose learned rates are tested",
    )

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (recorded in ``eval.json``)."""
        return dataclasses.asdict(self)


#: The :class:`EvalConfig` fields that test a run on other tasks (``ways``, ``shots``) or with
#: another inner learning rate than it trained with (the run's values when ``None``).
TEST_OVERRIDES: tuple[str, ...] = ("ways", "shots", "inner_lr")


POSITIVE_INTS = (
    "ways",
    "shots",
    "queries",
    "inner_steps",
    "meta_batch",
    "iterations",
    "hidden",
    "log_every",
    "checkpoint_every",
    "tasks",
    "eval_every",
    "validation_tasks",
    "validation_steps",
    "patience",
    "image_size",
)


def _allowed_types(annotation: Any) -> tuple[type, ...]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(type(None) if a is type(None) else a for a in typing.get_args(annotation))
    return (annotation,)


def check_type(key: str, value: Any, annotation: Any) -> Any:
    """``value`` if it fits ``annotation`` (ints pass as floats; bools never pass as numbers).

    A mismatch is a :class:`ConfigError` naming ``key``.

    >>> from mamlkit.training.config import check_type
    >>> check_type("outer_lr", 1, float), check_type("threads", None, int | None)
    (1.0, None)
    >>> check_type("ways", True, int)
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: config key 'ways' must be int, got True
    """
    allowed = _allowed_types(annotation)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    hint = (
        " (write true/false without quotes)" if bool in allowed and isinstance(value, str) else ""
    )
    raise ConfigError(f"config key {key!r} must be {names}, got {value!r}{hint}")


def validate(config: Any) -> None:
    """Type- and range-check every field of a config dataclass (in place: ints given for float
    fields become floats); a :class:`TrainConfig`'s names are looked up too (:func:`check_names`).
    Both config classes call it on construction."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        setattr(config, f.name, check_type(f.name, getattr(config, f.name), hints[f.name]))
    for key in POSITIVE_INTS:
        value = getattr(config, key, None)
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    for key in ("inner_lr", "outer_lr"):
        value = getattr(config, key, None)
        if value is not None and not (0 < value < float("inf")):
            raise ConfigError(f"{key} must be a finite number > 0, got {value}")
    schedule = getattr(config, "outer_lr_schedule", None)
    if schedule is not None and schedule not in OUTER_LR_SCHEDULES:
        raise ConfigError(
            f"outer_lr_schedule must be one of {', '.join(OUTER_LR_SCHEDULES)}, got {schedule!r}"
        )
    weights = getattr(config, "weights", "auto")
    if weights not in ("auto", "best", "final"):
        raise ConfigError(f"weights must be one of auto, best, final, got {weights!r}")
    check_protocol(config)
    execution = getattr(config, "execution", "auto")
    if execution not in EXECUTIONS:
        raise ConfigError(f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
    if getattr(config, "outer_lr_min", 0.0) < 0:
        raise ConfigError(f"outer_lr_min must be >= 0, got {config.outer_lr_min}")
    if getattr(config, "tasks_per_backward", None) is not None and config.tasks_per_backward < 1:
        raise ConfigError(f"tasks_per_backward must be >= 1, got {config.tasks_per_backward}")
    if getattr(config, "threads", None) is not None and config.threads < 1:
        raise ConfigError(f"threads must be >= 1, got {config.threads}")
    for key in ("msl_anneal_iterations", "first_order_iterations"):
        if getattr(config, key, 0) < 0:
            raise ConfigError(f"{key} must be >= 0, got {getattr(config, key)}")
    budget = getattr(config, "budget_minutes", None)
    if budget is not None and not (0 < budget < float("inf")):
        raise ConfigError(f"budget_minutes must be a finite number > 0, got {budget}")
    if isinstance(config, TrainConfig):
        config.logger = ",".join(logger_names(config.logger))
        check_augment(config)
        check_validation(config)
        if config.model is None:
            config.model = default_model(config.dataset)
        check_names(config)


def logger_names(value: str) -> tuple[str, ...]:
    """The loggers a ``logger`` value names, in :data:`LOGGERS` order; ``jsonl`` is always one
    of them (``metrics.jsonl`` is the run's record), so ``"csv"`` means ``"jsonl,csv"``.

    >>> from mamlkit.training.config import logger_names
    >>> logger_names("tensorboard, csv")
    ('jsonl', 'csv', 'tensorboard')
    >>> logger_names("tensorbord")
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: unknown logger 'tensorbord'; did you mean 'tensorboard'? (loggers:
    jsonl, csv, tensorboard, comma-separated)
    """
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(LOGGERS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], LOGGERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown logger {unknown[0]!r}{hint} (loggers: {', '.join(LOGGERS)}, comma-separated)"
        )
    return tuple(name for name in LOGGERS if name in names or name == "jsonl")


#: The sets of a task that ``augment`` may transform (``augment_sets``, comma-separated).
AUGMENT_SETS: tuple[str, ...] = ("support", "query")


def check_augment(config: TrainConfig) -> None:
    """Check and normalise ``augment`` (known names, in the order they apply; ``None`` for none)
    and ``augment_sets``; ``augment_sets`` changed without ``augment`` would be ignored, so it
    is refused.

    >>> from mamlkit.training.config import TrainConfig
    >>> config = TrainConfig(augment="crop, flip", augment_sets="query")
    >>> config.augment, config.augment_sets
    ('flip,crop', 'query')
    >>> TrainConfig(augment="flip", augment_sets="supports")
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: unknown augment_sets entry 'supports'; did you mean 'support'?
    (support, query, comma-separated)
    """
    try:
        names = augmentation_names(config.augment)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    config.augment = ",".join(names) or None
    sets = {name.strip() for name in config.augment_sets.split(",") if name.strip()}
    for name in sorted(sets - set(AUGMENT_SETS)):
        close = difflib.get_close_matches(name, AUGMENT_SETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown augment_sets entry {name!r}{hint} ({', '.join(AUGMENT_SETS)}, "
            "comma-separated)"
        )
    if not sets:
        raise ConfigError("augment_sets must name support, query or both")
    config.augment_sets = ",".join(name for name in AUGMENT_SETS if name in sets)
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "augment_sets")
    if config.augment is None and config.augment_sets != default:
        raise ConfigError(
            f"--augment-sets {config.augment_sets} only applies with --augment; add --augment "
            "NAMES (e.g. --augment flip,crop)"
        )


#: The model a run trains when none is given, by the dataset's task: images go to the Conv4 of
#: the MAML papers, regression inputs (vectors, e.g. the sinusoid's x) to an MLP.
DEFAULT_MODELS: dict[TaskKind, str] = {
    TaskKind.CLASSIFICATION: "conv4",
    TaskKind.REGRESSION: "mlp",
}


def default_model(dataset: str) -> str:
    """The model a run on ``dataset`` trains unless ``model`` is given (:data:`DEFAULT_MODELS`
    by the registered dataset's ``task``); the resolved name is what ``config.yaml`` records.

    >>> from mamlkit.training.config import TrainConfig, default_model
    >>> default_model("omniglot"), default_model("sinusoid")
    ('conv4', 'mlp')
    >>> TrainConfig(dataset="sinusoid").model
    'mlp'
    """
    factory = DATASETS.get(dataset)
    return DEFAULT_MODELS[TaskKind.parse(getattr(factory, "task", TaskKind.CLASSIFICATION))]


def check_validation(config: TrainConfig) -> None:
    """Validation settings need ``validation=True``: given without it they would be ignored,
    so they are refused instead."""
    if config.validation:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    given = [
        key
        for key in ("eval_every", "validation_tasks", "validation_steps", "patience")
        if getattr(config, key) != defaults[key]
    ]
    if given:
        flags = ", ".join("--" + key.replace("_", "-") for key in given)
        raise ConfigError(
            f"{flags} only apply with a validation split; add --validation (validation: true)"
        )


def validation_interval(config: TrainConfig) -> int:
    """Iterations between validation evaluations: ``eval_every``, else a tenth of the run.

    >>> from mamlkit.training.config import TrainConfig, validation_interval
    >>> validation_interval(TrainConfig(iterations=1000, validation=True))
    100
    >>> validation_interval(TrainConfig(iterations=5, validation=True, eval_every=2))
    2
    """
    return config.eval_every or max(1, config.iterations // 10)


def check_protocol(config: Any) -> None:
    """Check ``omniglot_split`` and ``episodes`` (a :class:`TrainConfig`'s; other configs have
    neither): known values, and no ``split_seed`` for the fixed lake split."""
    split = getattr(config, "omniglot_split", SPLIT_PROTOCOLS[0])
    if split not in SPLIT_PROTOCOLS:
        raise ConfigError(
            f"omniglot_split must be one of {', '.join(SPLIT_PROTOCOLS)}, got {split!r}"
        )
    if split == "lake" and config.split_seed != 0:
        raise ConfigError(
            f"split_seed applies only to omniglot_split vinyals; the lake split is fixed by the "
            f"archives' alphabets (got split_seed={config.split_seed})"
        )
    episodes = getattr(config, "episodes", EPISODES[0])
    if episodes not in EPISODES:
        raise ConfigError(f"episodes must be one of {', '.join(EPISODES)}, got {episodes!r}")


def check_names(config: TrainConfig) -> None:
    """Look up the algorithm, dataset and model names, so a typo fails with "did you mean"
    before any data is read (not after loading a dataset, nor as a missing-data error)."""
    DATASETS.get(config.dataset)
    try:
        parse_model(config.model)
    except (ConfigError, UnknownNameError):
        raise
    except ValueError as error:  # a malformed variant or an option the model does not take
        raise ConfigError(str(error)) from None
    resolve_algorithm(config.algorithm)


def field_names(cls: type) -> list[str]:
    """The field names of a config dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def unknown_key_message(key: str, known: list[str]) -> str:
    """The error message for an unknown config key, with the closest of ``known`` if any.

    >>> from mamlkit.training.config import EvalConfig, field_names, unknown_key_message
    >>> unknown_key_message("task", field_names(EvalConfig))
    "unknown config key 'task'; did you mean 'tasks'?"
    """
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (``safe_load``), with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML ({_yaml_problem(error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def _yaml_problem(error: Exception) -> str:
    """A YAML parse error in one line: where it is and what is wrong."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def build_config(cls: type, *layers: dict[str, Any]) -> Any:
    """``cls`` from its defaults overlaid by each mapping in ``layers`` (later layers win).

    Every value of every layer is type-checked, also one a later layer replaces (a bad value in a
    config file is an error even when a flag overrides it). Keys may be written with ``-``
    (``meta-batch``) or ``_``; an unknown key is a :class:`ConfigError` with a "did you mean".

    >>> from mamlkit.training.config import TrainConfig, build_config
    >>> from_file = {"shots": 5, "meta_batch": 16}
    >>> from_flags = {"meta-batch": 8}
    >>> config = build_config(TrainConfig, from_file, from_flags)
    >>> config.shots, config.meta_batch
    (5, 8)
    >>> build_config(TrainConfig, {"shot": 5})
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: unknown config key 'shot'; did you mean 'shots'?
    >>> build_config(TrainConfig, {"validation": "yes"}, {"validation": True})
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: config key 'validation' must be bool, got 'yes' (write true/false
    without quotes)
    """
    known = field_names(cls)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            key = str(key).replace("-", "_")
            if key not in known:
                raise ConfigError(unknown_key_message(key, known))
            values[key] = check_type(key, value, hints[key])
    return cls(**values)


def dump_yaml(config: Any) -> str:
    """A config dataclass as YAML, fields in declaration order (what ``config.yaml`` holds;
    :func:`load_yaml` and :func:`build_config` read it back).

    >>> from mamlkit.training.config import EvalConfig, dump_yaml
    >>> print(dump_yaml(EvalConfig()), end="")
    tasks: 600
    inner_steps: null
    queries: 15
    seed: 0
    meta_batch: 25
    split: test
    weights: auto
    ways: null
    shots: null
    inner_lr: null
    """
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
