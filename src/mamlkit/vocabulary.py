"""The words every layer shares: a parameter dict, and the kind of task being learned.

Defined once here so the functional core, the execution backends, the learner, training and the
datasets all speak of the same things by the same names.
"""

from __future__ import annotations

from enum import Enum

from torch import Tensor

#: Tensors by parameter name, e.g. ``dict(model.named_parameters())`` or adapted weights (a
#: tensor may carry a leading task dimension when many tasks are adapted at once).
Params = dict[str, Tensor]


class TaskKind(str, Enum):
    """What a task asks of the model: class labels (accuracy) or real-valued targets (MSE).

    A ``str`` enum, so it is written to ``config.yaml``, ``summary.json`` and weights files as
    its plain value, and read back with ``TaskKind(value)``.

    >>> from mamlkit.vocabulary import TaskKind
    >>> TaskKind("regression") is TaskKind.REGRESSION, str(TaskKind.CLASSIFICATION)
    (True, 'classification')
    >>> TaskKind("ranking")
    Traceback (most recent call last):
        ...
    ValueError: 'ranking' is not a valid TaskKind
    """

    #: N-way classification: int64 labels ``0..N-1``, cross-entropy, accuracy.
    CLASSIFICATION = "classification"
    #: Regression: float targets, mean squared error.
    REGRESSION = "regression"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: object) -> TaskKind:
        """``value`` as a task kind, or a ``ValueError`` naming the valid ones.

        >>> from mamlkit.vocabulary import TaskKind
        >>> TaskKind.parse("classification")
        <TaskKind.CLASSIFICATION: 'classification'>
        >>> TaskKind.parse("clasification")
        Traceback (most recent call last):
            ...
        ValueError: task 'clasification': choose one of classification, regression
        """
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(kind.value for kind in cls)
            raise ValueError(f"task {value!r}: choose one of {names}") from None


def table_key(name: str) -> str:
    """A parameter name as a key of an ``nn.ParameterDict`` or a buffer name, which cannot hold
    ``"."``; ``"-"`` cannot occur in a PyTorch attribute name, so the mapping is one to one.

    >>> from mamlkit.vocabulary import table_key
    >>> table_key("features.block1.conv.weight")
    'features-block1-conv-weight'
    """
    return name.replace(".", "-")
