"""ANIL with a learned inner learning rate per tensor: an algorithm is a spec of settings."""

from __future__ import annotations

from mamlkit import AlgorithmSpec

#: Only the head adapts (ANIL), with learned per-tensor inner rates.
ANIL_LR = AlgorithmSpec(
    "anil-lr",
    adapt=("head.*",),
    update_rule="per_tensor",
    reference="Raghu et al. 2020 (ANIL) with per-tensor learned inner learning rates.",
)
