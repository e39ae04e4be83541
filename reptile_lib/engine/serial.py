"""The serial reference loop: how most PyTorch ports of Reptile run a meta-iteration.

One ``nn.Module`` and one ``torch.optim.Adam(betas=(0, 0.999))``; for each task of the meta-batch
in turn, phi is copied into the module's weights and the optimiser steps k times on the task's
mini-batches (its state carried from task to task, as the released TensorFlow code does); then
phi moves toward the mean of the adapted weights. Same algorithm as
``meta_step(..., batched=False, adam_carry='sequential')`` (up to where Adam adds its epsilon),
one small kernel sequence per task and step: the baseline the benchmark measures the engine against.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..inner import Batch
from ..params import Params


class SerialReptile:
    """Reptile with an ``nn.Module`` per meta-iteration, tasks one after another (the usual port)."""

    def __init__(self, model: nn.Module, phi: Params, lr: float, sgd: bool = False):
        self.net = copy.deepcopy(model)
        self.phi = {k: v.detach().clone() for k, v in phi.items()}
        with torch.no_grad():
            for n, p in self.net.named_parameters():
                p.copy_(self.phi[n])
        params = list(self.net.parameters())
        self.opt = (torch.optim.SGD(params, lr=lr) if sgd else
                    torch.optim.Adam(params, lr=lr, betas=(0.0, 0.999), eps=1e-8))

    def step(self, batches: Sequence[Batch], eps: float) -> Tensor:
        """One meta-iteration on ``batches`` (each x (T, B, ...), y (T, B)); returns the last task's last loss."""
        n_tasks = batches[0][1].shape[0]
        total = {k: torch.zeros_like(v) for k, v in self.phi.items()}
        loss = None
        for t in range(n_tasks):
            with torch.no_grad():
                for n, p in self.net.named_parameters():
                    p.copy_(self.phi[n])
            for x, y in batches:
                self.opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(self.net(x[t]), y[t], reduction="sum")  # the released summed loss
                loss.backward()
                self.opt.step()
            with torch.no_grad():
                for n, p in self.net.named_parameters():
                    total[n] += p
        with torch.no_grad():
            for k in self.phi:  # phi + eps * (mean of the adapted weights - phi)
                self.phi[k] += eps * (total[k] / n_tasks - self.phi[k])
        return loss.detach()
