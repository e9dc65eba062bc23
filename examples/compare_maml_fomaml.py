"""MAML vs first-order MAML through the Python API, on identical Omniglot tasks.

Both learners start from the same weights, train on the same episode stream (same sampler seed)
and are tested on the same test tasks; the script prints time, accuracy and the ratio. For the
full measured comparison (separate processes, memory, plots, report) use ``mamlkit compare``.

    python examples/compare_maml_fomaml.py --data-root ../shared/data --iterations 200
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import mamlkit
from mamlkit.data import EpisodeSampler, Omniglot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="folder holding omniglot/*.zip")
    parser.add_argument("--download", action="store_true", help="download Omniglot if missing")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="filters per conv layer")
    parser.add_argument("--eval-tasks", type=int, default=200)
    args = parser.parse_args()

    train = Omniglot(args.data_root, "train", download=args.download)
    test = Omniglot(args.data_root, "test", download=args.download)
    torch.manual_seed(0)
    initial = mamlkit.Conv4(in_channels=1, num_classes=5, hidden=args.hidden)

    rows = []
    for first_order in (False, True):
        tasks = EpisodeSampler(
            train, ways=5, shots=1, queries=1, meta_batch=args.meta_batch, seed=0
        )
        start = time.perf_counter()
        _, learner, _ = mamlkit.train_maml(
            copy.deepcopy(initial),  # the same initial weights for both
            tasks,
            inner_lr=0.4,
            outer_lr=0.003,
            inner_steps=args.inner_steps,
            first_order=first_order,
            iterations=args.iterations,
        )
        seconds = time.perf_counter() - start
        test_tasks = EpisodeSampler(test, ways=5, shots=1, queries=15, meta_batch=25, seed=0)
        result = mamlkit.evaluate(learner, test_tasks, tasks=args.eval_tasks, inner_steps=3)
        rows.append((learner.algorithm.name, seconds, result))

    print(f"{'algorithm':10s} {'train s':>8s}  test accuracy")
    for name, seconds, result in rows:
        print(f"{name:10s} {seconds:8.1f}  {result.summary()}")
    (maml_name, maml_s, maml_r), (fo_name, fo_s, fo_r) = rows
    print(
        f"{fo_name} trained {maml_s / fo_s:.1f}x faster than {maml_name}; accuracy difference "
        f"{100 * (fo_r.accuracy - maml_r.accuracy):+.1f} points"
    )


if __name__ == "__main__":
    main()
