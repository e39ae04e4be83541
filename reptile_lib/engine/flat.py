"""All parameters of a network as one flat vector, so the optimiser is a handful of kernels.

The reference path keeps parameters as a dict of 18 tensors (OmniglotNet), so every inner Adam
step is 18 x 9 small elementwise kernels. Here the whole network is one ``(..., P)`` vector;
``FlatLayout.views`` hands ``functional_call`` per-layer *views* of it (no copies), and the
gradient with respect to the vector comes back as one tensor (the backward of the split is one
concatenation). The Adam step then costs 9 kernels whatever the number of layers.
"""
from __future__ import annotations

import math
from typing import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..params import Params


@dataclass(frozen=True)
class FlatLayout:
    """Names, shapes and order of the parameters packed into one vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(params: Params) -> "FlatLayout":
        return FlatLayout(tuple(params), tuple(tuple(v.shape) for v in params.values()))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def flatten(self, params: Params, lead: int = 0) -> Tensor:
        """Pack ``params`` (each with ``lead`` leading batch dims) into ``(*lead_dims, P)``."""
        if set(params) != set(self.names):
            raise ValueError(f"parameters {sorted(params)} do not match the layout {sorted(self.names)}")
        first = params[self.names[0]]
        return torch.cat([params[n].reshape(*first.shape[:lead], -1) for n in self.names], dim=-1)

    def views(self, flat: Tensor) -> Params:
        """Per-parameter views of ``flat`` (..., P): no data is copied."""
        if flat.shape[-1] != self.numel:
            raise ValueError(f"a flat vector of {flat.shape[-1]} values for a layout of {self.numel}")
        lead = flat.shape[:-1]
        return {n: part.reshape(*lead, *shape)
                for n, shape, part in zip(self.names, self.shapes, flat.split(self.sizes, dim=-1))}


class BatchLayout:
    """N = R x T parameter sets (runs x tasks) in one *parameter-major* buffer of N * P values.

    Block i holds parameter i of every instance, ``(R, T, *shape_i)`` contiguous, so a batched
    network reads ``(N * out_channels, in, 3, 3)`` grouped-convolution weights as plain views (an
    instance-major ``(N, P)`` buffer would need a copy per layer and step). Elementwise optimiser
    arithmetic does not care about the order. Two precomputed index maps move between this order
    and the runs' ``(R, P)`` / ``(R, T, P)`` instance-major vectors with one gather each.
    """

    def __init__(self, layout: FlatLayout, runs: int, tasks: int, device, index_maps: bool = True):
        self.layout, self.runs, self.tasks = layout, runs, tasks
        self.n = runs * tasks
        sizes = torch.tensor(layout.sizes)
        self.offsets = [0] + torch.cumsum(sizes * self.n, 0).tolist()[:-1]
        if index_maps:
            # For every buffer position: which parameter, instance and element it holds.
            param = torch.repeat_interleave(torch.arange(len(sizes)), sizes * self.n)
            start = torch.repeat_interleave(torch.tensor(self.offsets), sizes * self.n)
            local = torch.arange(self.n * layout.numel) - start
            size = sizes[param]
            instance, element = local // size, local % size
            flat_pos = torch.cumsum(sizes, 0)[param] - size + element  # position inside one (P,) vector
            self.from_runs = (instance // tasks * layout.numel + flat_pos).to(device)  # into (R, P)
            self.run_of = (instance // tasks).to(device)
            to_inst = torch.empty_like(local)
            to_inst[instance * layout.numel + flat_pos] = torch.arange(self.n * layout.numel)
            self.to_instances_index = to_inst.to(device)

    def views(self, buf: Tensor) -> dict[str, Tensor]:
        """``{name: (N, *shape)}`` views of a parameter-major buffer."""
        return {name: buf[o: o + self.n * s].view(self.n, *shape)
                for name, shape, s, o in zip(self.layout.names, self.layout.shapes, self.layout.sizes, self.offsets)}

    def pack(self, per_param: Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter ``(N, *shape)`` tensors (e.g. gradients) into a buffer: one kernel."""
        return torch.cat([t.reshape(-1) for t in per_param])

    def expand_runs(self, runs: Tensor) -> Tensor:
        """(R, P) -> buffer with every task of run r starting from row r."""
        return runs.reshape(-1)[self.from_runs]

    def to_instances(self, buf: Tensor) -> Tensor:
        """Buffer -> (R, T, P) instance-major."""
        return buf[self.to_instances_index].view(self.runs, self.tasks, self.layout.numel)

    def per_element(self, per_run: Tensor) -> Tensor:
        """A per-run value (R,) spread over the buffer's N * P elements."""
        return per_run[self.run_of]

    def expand_one(self, flat: Tensor) -> Tensor:
        """One (P,) vector repeated for all N instances (evaluation: no index maps needed)."""
        parts = flat.split(self.layout.sizes)
        return torch.cat([p.expand(self.n, -1).reshape(-1) for p in parts])
