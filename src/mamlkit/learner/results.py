"""What a learner hands back: adapted tasks that predict, and per-step scores of tasks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mamlkit.backends import TaskForward, task_slice


@dataclass
class AdaptedTasks:
    """Adapted parameters of a batch of tasks; call it on new inputs of them (``[B, n, ...]``).

    ``task_params`` holds the adapted tensors as ``[B, *shape]`` (the tensors that do not adapt
    are shared); :attr:`params` gives them one dict per task. What
    :meth:`~mamlkit.MetaLearner.adapt` returns; see :class:`~mamlkit.MetaLearner` for an example.

    Attributes:
        forward: the task forward (:mod:`mamlkit.backends`) that evaluates them.
        task_params: parameter name -> ``[B, *shape]`` (adapted) or ``shape`` (shared) tensor.
        per_task: the names in ``task_params`` that have a task dimension.
        tasks: ``B``; inputs must be given for exactly these tasks, in the same order.
        classification: whether :meth:`predict` takes the arg-max of the outputs.
    """

    forward: TaskForward
    task_params: dict[str, Tensor]
    per_task: frozenset[str]
    tasks: int
    classification: bool = True

    @property
    def params(self) -> list[dict[str, Tensor]]:
        """One parameter dict per task (tensors that do not adapt are the model's own)."""
        return [task_slice(self.task_params, self.per_task, b) for b in range(self.tasks)]

    def __call__(self, x: Tensor) -> Tensor:
        """Outputs ``[B, n, ...]`` of each task's adapted model on its inputs ``x[b]``."""
        if x.dim() < 3 or x.shape[0] != self.tasks:
            raise ValueError(
                f"expected inputs for {self.tasks} tasks as [tasks, examples, ...], "
                f"got shape {tuple(x.shape)}"
            )
        return self.forward(self.task_params, x)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class labels ``[B, n]`` (regression: the outputs themselves)."""
        outputs = self(x)
        return outputs.argmax(dim=-1) if self.classification else outputs


@dataclass
class TaskScores:
    """Query loss and accuracy of each task after 0, 1, ..., K inner steps (shape ``[B, K+1]``);
    ``accuracy`` is ``None`` for regression.

    What :meth:`~mamlkit.MetaLearner.score_tasks` returns; column 0 scores the un-adapted model,
    the last column the model after K steps (what :func:`mamlkit.evaluate` reports).
    """

    loss: Tensor
    accuracy: Tensor | None
