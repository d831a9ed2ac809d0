"""Optimiser used to train SCALEX."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def adam_creator(
    lr: float, weight_decay: float, eps: float
) -> Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]:
    """An optimiser creator for :class:`~scvi.train.TrainingPlan` (``optimizer="Custom"``).

    scvi's built-in ``"Adam"`` uses PyTorch's default (for-each) implementation; the fused one
    computes the same update and is about 1.8× faster per step for SCALEX on two CPU cores.
    """
    return partial(_adam, lr=lr, weight_decay=weight_decay, eps=eps)


def _adam(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, eps: float
) -> torch.optim.Optimizer:
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # a device without a fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, eps=eps)
