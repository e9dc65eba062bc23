"""MAML: adapt every parameter with plain SGD steps, differentiate through them (second order).

Finn, Abbeel and Levine (ICML 2017). For each task, K gradient steps of a fixed rate on its
support set; the outer loop minimises the query loss after the last step, differentiated through
every inner step (Hessian-vector products included). Every other algorithm here is this one with
some settings changed, so its spec takes the default of every setting.

Also here: Finn et al.'s published Omniglot protocol, which the ``paper*`` comparison presets use
for MAML, FOMAML and every algorithm that has no published protocol of its own.
"""

from __future__ import annotations

from typing import Any

from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm

FINN_2017 = "Finn, Abbeel, Levine. Model-Agnostic Meta-Learning. ICML 2017."

# Finn et al. 2017, appendix A.1 ("the 5-way ... models were each trained with 1 gradient step
# with step size alpha = 0.4 and a meta batch-size of 32 tasks. The network was evaluated using 3
# gradient steps with the same step size alpha = 0.4. The 20-way convolutional MAML model was
# trained and evaluated with 5 gradient steps with step size alpha = 0.1. During training, the
# meta batch-size was set to 16 tasks ... All models were trained for 60000 iterations"), and the
# usage lines of github.com/cbfinn/maml main.py (--metatrain_iterations=60000
# --meta_batch_size=32 --update_lr=0.4 --num_updates=1 for 5-way; --meta_batch_size=16
# --update_lr=0.1 --num_updates=5 for 20-way; meta_lr default 0.001). That code draws
# 2 * update_batch_size images per class (DataGenerator(FLAGS.update_batch_size*2, ...)), so a
# training task has as many query images per class as shots, and it tests on 600 tasks
# (NUM_TEST_POINTS).

#: Finn et al.'s Omniglot protocol by ways: train-config values, and ``test_steps``, the inner
#: steps at test time. Queries per class equal the shots in training.
OMNIGLOT_PROTOCOL: dict[int, dict[str, Any]] = {
    5: {"meta_batch": 32, "inner_lr": 0.4, "inner_steps": 1, "test_steps": 3},
    20: {"meta_batch": 16, "inner_lr": 0.1, "inner_steps": 5, "test_steps": 5},
}
#: Finn et al.'s Omniglot network, as a model name: Conv4 with stride-2 convolutions and no
#: max-pooling, features averaged over positions before the head (their code's conv_block without
#: FLAGS.max_pool, and reduce_mean for every dataset but mini-ImageNet).
OMNIGLOT_MODEL = "conv4[downsample=stride]"
#: Values of that protocol shared by every Omniglot setting.
OMNIGLOT_SHARED: dict[str, Any] = {"iterations": 60000, "outer_lr": 0.001, "test_tasks": 600}

SPEC = register_algorithm(AlgorithmSpec("maml", reference=FINN_2017))
