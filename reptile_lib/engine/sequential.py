"""The released Adam order, fast on a CPU: the tasks of a meta-batch one after another, on flat buffers.

Same computation as ``algorithms.meta_step(..., batched=False, adam_carry='sequential')`` (the
released ``Reptile.train_step``): each task starts from phi and from the Adam state the previous
task left, takes k inner steps, and phi <- phi + eps * (mean adapted - phi) (or, with step weights,
phi + eps * mean_tau sum_i w_i (phi_{i+1} - phi_i)). Only the layout of the arithmetic differs:

- one network, one task at a time: on a CPU, batching tasks (grouped convolutions) buys little,
  while the memory layout buys some, so activations are ``channels_last`` throughout and
  the parameters live in one flat vector in the layout the kernels want (convolution kernels as
  (out, kh, kw, in), the dense layer's columns in (h, w, channels) order), so no reorder is paid;
- TensorFlow's 'same' padding of stride-2 convolutions (one zero row/column at the bottom/right)
  is a padding whose backward hands a contiguous gradient to the next layer's ReLU backward
  (a strided one makes that kernel several times slower);
- batch statistics gathered in two passes (PyTorch's channels_last BatchNorm loses float32 precision);
- Adam (beta1 = 0) or SGD on the flat vector: a handful of in-place kernels per inner step;
- where the one-call kernels of :mod:`.native` can be built (a C++ compiler and PyTorch's BLAS),
  the forward pass and the gradient are one call per step instead of some 60 (``kernels="auto"``).

The same single-task inner loop serves an evaluation (:func:`sequential_evaluate`): every task adapts
from the trained phi and Adam state (restored after the task), then predicts its queries under
both protocols, as ``evaluate.evaluate`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import BatchStatNorm, MiniImageNetNet, OmniglotNet, SameConv2d, tf_same_padding
from ..optim import SGD, Adam, InnerOptimizer, OptState
from ..params import Params
from . import native


def supports(model: nn.Module, opt: InnerOptimizer | None = None) -> bool:
    """Whether this path implements ``model`` (the paper's two networks) and ``opt`` (Adam with beta1 = 0, SGD)."""
    if type(model) not in (OmniglotNet, MiniImageNetNet):
        return False
    return opt is None or isinstance(opt, SGD) or (isinstance(opt, Adam) and not opt.beta1)


class _PadBottomRight(torch.autograd.Function):
    """Zero rows/columns at the bottom/right (TensorFlow 'same', stride 2); contiguous gradient back."""

    @staticmethod
    def forward(ctx, x: Tensor, bottom: int, right: int) -> Tensor:
        ctx.size = x.shape[-2:]
        return F.pad(x, (0, right, 0, bottom)).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, g: Tensor):
        h, w = ctx.size
        return g[..., :h, :w].contiguous(memory_format=torch.channels_last), None, None


@dataclass(frozen=True)
class _Layer:
    kind: str              # conv | norm | relu | pool
    prefix: str = ""
    stride: int = 1
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, bottom, left, right
    eps: float = 0.0
    pool: tuple = ()


class FlatNet:
    """OmniglotNet / MiniImageNetNet for one flat parameter vector, ``channels_last`` activations.

    ``to_flat`` / ``to_params`` convert between the library's parameter dicts and the vector, in
    which each tensor is stored in the order its kernel reads (see module docstring).
    """

    def __init__(self, model: nn.Module):
        if not supports(model):
            raise TypeError(f"no fast sequential path for {type(model).__name__}: only OmniglotNet and MiniImageNetNet")
        self.model = model
        self.channels, self.size = model.channels, model.image_size
        self.layers: list[_Layer] = []
        size = self.size
        for name, layer in model.features.named_children():
            prefix = f"features.{name}."
            if isinstance(layer, SameConv2d):
                k, s = layer.kernel_size[0], layer.stride[0]
                top, bottom = tf_same_padding(size, k, s)
                self.layers.append(_Layer("conv", prefix, s, (top, bottom, top, bottom)))
                size = math.ceil(size / s)
            elif isinstance(layer, BatchStatNorm):
                self.layers.append(_Layer("norm", prefix, eps=layer.eps))
            elif isinstance(layer, nn.ReLU):
                self.layers.append(_Layer("relu"))
            elif isinstance(layer, nn.MaxPool2d):
                self.layers.append(_Layer("pool", pool=(layer.kernel_size, layer.stride, layer.padding,
                                                        layer.dilation, layer.ceil_mode)))
                size = math.ceil(size / 2) if layer.ceil_mode else size // 2
            else:
                raise TypeError(f"no fast form of {type(layer).__name__}")
        self.final = size
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        self.sizes = [math.prod(self.shapes[n]) for n in self.names]
        self.numel = sum(self.sizes)

    # ------------------------------------------------------------ layouts
    def _stored(self, name: str, t: Tensor) -> Tensor:
        """A parameter in its stored order (standard shape in, stored-order tensor out)."""
        if t.dim() == 4:                                   # conv (O, I, kh, kw) -> (O, kh, kw, I)
            return t.permute(0, 2, 3, 1)
        if name == "classifier.weight":                    # (ways, C*h*w) -> (ways, h, w, C)
            return t.reshape(t.shape[0], -1, self.final, self.final).permute(0, 2, 3, 1)
        return t

    def views(self, flat: Tensor) -> list[Tensor]:
        """What the forward pass reads: conv kernels as channels_last (O, I, kh, kw) views, the dense
        layer as (ways, h*w*C), the rest in their own shapes; all views of ``flat``."""
        out = []
        for name, part in zip(self.names, flat.split(self.sizes)):
            shape = self.shapes[name]
            if len(shape) == 4:
                o, i, kh, kw = shape
                out.append(part.view(o, kh, kw, i).permute(0, 3, 1, 2))
            elif name == "classifier.weight":
                out.append(part.view(shape[0], -1))
            else:
                out.append(part.view(shape))
        return out

    def to_flat(self, params: Params, dtype: torch.dtype | None = None) -> Tensor:
        first = params[self.names[0]]
        return torch.cat([self._stored(n, params[n].detach()).reshape(-1) for n in self.names]).to(
            dtype or first.dtype)

    def to_params(self, flat: Tensor) -> Params:
        out = {}
        for name, part in zip(self.names, flat.split(self.sizes)):
            shape = self.shapes[name]
            if len(shape) == 4:
                o, i, kh, kw = shape
                out[name] = part.view(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()
            elif name == "classifier.weight":
                out[name] = part.view(shape[0], self.final, self.final, -1).permute(0, 3, 1, 2).reshape(shape).clone()
            else:
                out[name] = part.view(shape).clone()
        return out

    # ------------------------------------------------------------ forward
    def images(self, x: Tensor) -> Tensor:
        """(B, ...) inputs as (B, C, H, W) channels_last (as ``model.forward`` reshapes them)."""
        x = x.reshape(-1, self.channels, self.size, self.size)
        return x.contiguous(memory_format=torch.channels_last)

    def logits(self, w: list[Tensor], x: Tensor, groups: int = 1) -> Tensor:
        """The network's outputs (B, ways) for parameters ``w`` (from :meth:`views`) and images x (B, C, H, W).

        ``groups`` > 1 splits the batch into that many equal batches, each normalised with its own
        statistics (what ``vmap`` over separate calls computes), for the non-transductive protocol.
        """
        p = dict(zip(self.names, w))
        h = x
        for layer in self.layers:
            if layer.kind == "conv":
                top, bottom, left, right = layer.pad
                wt, b = p[layer.prefix + "weight"], p[layer.prefix + "bias"]
                if top == bottom and left == right:
                    h = F.conv2d(h, wt, b, layer.stride, (top, left))
                else:  # TensorFlow 'same', stride 2 on an even size: the extra zero at the bottom/right
                    h = F.conv2d(_pad(h, top, bottom, left, right), wt, b, layer.stride)
            elif layer.kind == "norm" and groups == 1:
                h = _BatchNorm.apply(h, p[layer.prefix + "weight"], p[layer.prefix + "bias"], layer.eps)
            elif layer.kind == "norm":   # statistics per group of consecutive images (no autograd needed)
                h = _group_norm_stats(h, groups, p[layer.prefix + "weight"], p[layer.prefix + "bias"], layer.eps)
            elif layer.kind == "relu":
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, *layer.pool)
        feats = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)   # (B, h*w*C): a view of channels_last
        return F.linear(feats, p["classifier.weight"], p["classifier.bias"])


class _BatchNorm(torch.autograd.Function):
    """Batch normalisation on the batch's statistics, for channels_last activations, as precise as on NCHW.

    PyTorch's channels_last CPU kernel gathers the statistics in a way that loses about ten times more
    float32 precision (measured: 3e-5 against 2e-6 on a batch whose mean is far from 0), which the
    inner Adam steps carry into the weights. Here the statistics take two passes over the (N*H*W, C)
    view (the mean, then the mean squared deviation; ``var_mean`` over that axis was 5x slower), the
    normalisation and the backward are PyTorch's kernels given those statistics.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        h = h.contiguous(memory_format=torch.channels_last)
        rows = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        mean = rows.mean(0)
        var = torch.sub(rows, mean).square_().mean(0)
        out = F.batch_norm(h, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(h, weight, mean, torch.rsqrt(var + eps))
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        h, weight, mean, invstd = ctx.saved_tensors
        dh, dw, db = torch.ops.aten.native_batch_norm_backward(
            g.contiguous(memory_format=torch.channels_last), h, weight, None, None, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], True, True])
        return dh, dw, db, None


def _group_norm_stats(h: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch normalisation (training statistics, biased variance) of each group of h's batch separately."""
    n, c, hh, ww = h.shape
    hv = h.permute(0, 2, 3, 1).reshape(groups, (n // groups) * hh * ww, c)
    var, mean = torch.var_mean(hv, 1, correction=0, keepdim=True)
    scale = torch.rsqrt(var + eps) * weight
    out = (hv - mean) * scale + bias
    return out.reshape(n, hh, ww, c).permute(0, 3, 1, 2)


def resolve_kernels(kernels: str, net: FlatNet, dtype: torch.dtype, device: Any = "cpu") -> str:
    """``native`` (one call per step, :mod:`.native`) or ``torch`` (PyTorch's kernels); ``auto`` picks
    native wherever it can be built and implements the network, dtype and device."""
    if kernels not in ("auto", "native", "torch"):
        raise ValueError(f"kernels must be 'auto', 'native' or 'torch', got {kernels!r}")
    if kernels == "torch":
        return "torch"
    ok = native.supports(net, dtype, device) and native.available()
    if kernels == "native" and not ok:
        why = native.unavailable_reason() or f"not implemented for this network in {dtype} on {device}"
        raise RuntimeError(f"native kernels requested but unavailable: {why}; use kernels='torch'")
    return "native" if ok else "torch"


def _pad(h: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    if top or left or not torch.is_grad_enabled():  # plain form where no gradient flows
        return F.pad(h, (left, right, top, bottom))
    return _PadBottomRight.apply(h, bottom, right)


class TaskLoop:
    """The inner loop of one task at a time on flat buffers: ``p`` (parameters) and ``v`` (Adam's second moments).

    ``step`` does one optimiser step of the released Adam (beta1 = 0, TensorFlow's epsilon) or SGD
    in place on ``p`` and ``v``, and returns the loss before the step.
    """

    def __init__(self, net: FlatNet, opt: InnerOptimizer, reduction: str = "sum", dtype: torch.dtype | None = None,
                 device: Any = "cpu", kernels: str = "auto"):
        if not supports(net.model, opt):
            raise TypeError(f"no fast sequential path for {opt!r}: Adam with beta1 = 0 or SGD")
        self.net, self.opt, self.reduction = net, opt, reduction
        self.adam = isinstance(opt, Adam)
        dtype = dtype or torch.get_default_dtype()
        self.kernels = resolve_kernels(kernels, net, dtype, device)
        self.native = native.NativeNet(net, dtype) if self.kernels == "native" else None
        self.p = torch.zeros(net.numel, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.p) if self.adam else None
        self.g = torch.zeros_like(self.p)
        self.leaves = [t.requires_grad_() for t in net.views(self.p)]
        self.g_views = net.views(self.g)
        self._denom = torch.zeros_like(self.p)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.net.logits(self.leaves, x), y, reduction=self.reduction)

    def logits(self, x: Tensor, groups: int = 1) -> Tensor:
        """The network's outputs at ``p`` for images x (B, C, H, W) (see :meth:`FlatNet.logits`)."""
        if self.native is not None:
            return self.native.logits(self.p, x, groups)
        with torch.no_grad():
            return self.net.logits([t.detach() for t in self.leaves], x, groups)

    def grad(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss at ``p`` on (x, y), its gradient written to ``self.g``."""
        if self.native is not None:
            return self.native.grad(self.p, x, y, self.g, self.reduction == "mean")
        with torch.enable_grad():
            loss = self.loss(x, y)
            grads = torch.autograd.grad(loss, self.leaves)
        torch._foreach_copy_(self.g_views, list(grads))
        return loss.detach()

    def step_sizes(self, step: Tensor | None, n: int) -> list[float]:
        """Step sizes of the next n steps: Adam's lr * sqrt(1 - beta2^t), t = step+1..step+n, computed as
        ``optim.Adam`` computes it (in the state's dtype); SGD's lr."""
        if not self.adam:
            return [self.opt.lr] * n
        t = step + torch.arange(1, n + 1, dtype=step.dtype, device=step.device)
        return (self.opt.lr * torch.sqrt(1 - self.opt.beta2 ** t)).tolist()

    def update(self, lr_t: float, out: Tensor | None = None) -> None:
        """p <- p - lr_t * g / (sqrt(v) + eps) with v <- beta2 v + (1 - beta2) g^2 (Adam), or p - lr g (SGD).

        ``out``, if given, receives the update itself (phi_{i+1} - phi_i) for the step weights.
        """
        g = self.g
        if self.native is not None:
            b2, eps = (self.opt.beta2, self.opt.eps) if self.adam else (0.0, 0.0)
            self.native.update(self.p, self.v, g, lr_t, b2, eps, out)
            return
        if self.adam:
            b2 = self.opt.beta2
            self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            torch.sqrt(self.v, out=self._denom).add_(self.opt.eps)
            if out is None:
                self.p.addcdiv_(g, self._denom, value=-lr_t)
            else:
                torch.div(g, self._denom, out=out).mul_(-lr_t)
                self.p.add_(out)
        elif out is None:
            self.p.add_(g, alpha=-lr_t)
        else:
            torch.mul(g, -lr_t, out=out)
            self.p.add_(out)


class SequentialMetaStep:
    """``meta_step`` one task at a time on flat buffers, fast on a CPU.

    Call it like :func:`reptile_lib.algorithms.meta_step` (it is ``train.meta_train``'s ``step_fn``).
    With ``adam_carry='sequential'`` (the released order) each task starts from the Adam state the
    previous task left; with ``adam_carry='mean'`` (the batched path's carry, ``batched=True`` or not)
    every task starts from the same state and the next meta-iteration gets the tasks' states averaged;
    with plain SGD (Figure 3) no state passes between tasks, so every order is the same computation.
    Returns a ``MetaStepResult`` whose ``params`` and ``state`` are the library's usual dicts, so
    checkpoints are those of the reference path. A loss that is not ``inner.CrossEntropy`` over one of
    the paper's networks, or an optimiser this path lacks, runs the reference ``meta_step`` instead.
    """

    def __init__(self, kernels: str = "auto"):
        self.kernels = kernels   # 'auto' | 'native' | 'torch' (see :func:`resolve_kernels`)
        self._nets: dict[int, FlatNet] = {}
        self._loops: dict[tuple, TaskLoop] = {}

    def loop_for(self, loss_fn, opt: InnerOptimizer, ref: Tensor) -> TaskLoop | None:
        """The flat inner loop for this loss, optimiser, dtype and device (None: not supported)."""
        model, reduction = getattr(loss_fn, "model", None), getattr(loss_fn, "reduction", None)
        if model is None or reduction not in ("sum", "mean") or not supports(model, opt):
            return None
        key = (id(model), opt, reduction, ref.dtype, ref.device)
        if key not in self._loops:
            net = self._nets.setdefault(id(model), FlatNet(model))
            self._loops[key] = TaskLoop(net, opt, reduction, ref.dtype, ref.device, self.kernels)
        return self._loops[key]

    def __call__(self, loss_fn, phi: Params, opt: InnerOptimizer, state: OptState,
                 batches: Sequence[tuple[Tensor, Tensor]], eps: float, weights: Sequence[float],
                 batched: bool = False, adam_carry: str = "sequential"):
        from ..algorithms import MetaStepResult, is_reptile, meta_step

        if adam_carry not in ("sequential", "mean"):
            raise ValueError(f"adam_carry must be 'sequential' or 'mean', got {adam_carry!r}")
        if batched and adam_carry == "sequential":
            raise ValueError("adam_carry='sequential' runs tasks one after another: use batched=False")
        if len(weights) != len(batches):
            raise ValueError(f"{len(weights)} step weights for {len(batches)} inner steps")
        net_first = next(iter(phi.values()))
        loop = self.loop_for(loss_fn, opt, net_first)
        if loop is None:
            return meta_step(loss_fn, phi, opt, state, batches, eps, weights, batched=batched, adam_carry=adam_carry)
        net = loop.net
        phi_flat = net.to_flat(phi)
        reptile = is_reptile(weights)
        carry = loop.adam and adam_carry == "sequential"   # else every task starts from the same state
        n_tasks, k = batches[0][0].shape[0], len(batches)
        with torch.no_grad():
            step = None
            if loop.adam:
                v0 = net.to_flat(state["v"])
                loop.v.copy_(v0)
                step = state["step"]
                v_sum = None if carry else torch.zeros_like(v0)
            lrs = loop.step_sizes(step, n_tasks * k if carry else k)
            total = torch.zeros_like(phi_flat)
            upd = None if reptile else torch.empty_like(phi_flat)
            xs = [net.images(x.to(phi_flat.dtype)) for x, _ in batches]   # (T*B, C, H, W) per step
            losses = []
            for t in range(n_tasks):
                loop.p.copy_(phi_flat)    # every task starts from phi
                if loop.adam and not carry:
                    loop.v.copy_(v0)      # ... and, carrying the mean, from the same Adam state
                for i, (x, y) in enumerate(batches):
                    b = x.shape[1]
                    lr = lrs[t * k + i] if carry else lrs[i]
                    losses.append(loop.grad(xs[i][t * b:(t + 1) * b], y[t]))
                    if reptile or not weights[i]:
                        loop.update(lr)
                    else:
                        loop.update(lr, upd)
                        total.add_(upd, alpha=weights[i])
                if reptile:
                    total.add_(loop.p)
                if loop.adam and not carry:
                    v_sum.add_(loop.v)
            if reptile:  # phi + eps * (mean adapted - phi)
                new_flat = phi_flat + eps * (total / n_tasks - phi_flat)
            else:        # phi + eps * mean_tau sum_i w_i (phi_{i+1} - phi_i)
                new_flat = phi_flat + (total / n_tasks) * eps
            new_state: OptState = dict(state)
            if loop.adam:
                v_new = loop.v if carry else v_sum / n_tasks
                new_state = {"step": step + (n_tasks * k if carry else k), "v": net.to_params(v_new)}
            return MetaStepResult(net.to_params(new_flat), new_state, torch.stack(losses).view(n_tasks, k))


# ---------------------------------------------------------------- evaluation
class TaskEvaluator:
    """Adapt-and-predict for one task at a time (Section 7 protocol, released ``Reptile.evaluate``).

    On the native kernels, with ``threads`` (default: torch's thread count) above one, the tasks of a
    chunk are shared among that many threads, each with its own buffers and a one-thread BLAS: the
    tasks are independent, the C++ calls release the interpreter, and the results are the same
    task by task as one thread's.
    """

    def __init__(self, model: nn.Module, opt: InnerOptimizer, phi: Params, state: OptState, reduction: str = "sum",
                 kernels: str = "auto", threads: int | None = None):
        self.net = FlatNet(model)
        ref = phi[self.net.names[0]]
        self.loop = TaskLoop(self.net, opt, reduction, ref.dtype, ref.device, kernels)
        self.phi = self.net.to_flat(phi)
        self.v0 = self.net.to_flat(state["v"]) if self.loop.adam else None
        self.step0 = state["step"] if self.loop.adam else None
        self.lrs: dict[int, list[float]] = {}
        self.threads = threads
        self._args = (model, opt, phi, state, reduction, self.loop.kernels)
        self._clones: list[TaskEvaluator] = []

    def adapt(self, batches: Sequence[tuple[Tensor, Tensor]]) -> None:
        """k steps from phi and the trained Adam state (a fresh copy per task: nothing leaks between tasks)."""
        loop = self.loop
        k = len(batches)
        if k not in self.lrs:
            self.lrs[k] = loop.step_sizes(self.step0, k)
        loop.p.copy_(self.phi)
        if loop.adam:
            loop.v.copy_(self.v0)
        for i, (x, y) in enumerate(batches):
            loop.grad(self.net.images(x), y)
            loop.update(self.lrs[k][i])

    def predict(self, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted labels of the queries, (transductive, non-transductive), from the adapted weights."""
        net, loop = self.net, self.loop
        trans = loop.logits(net.images(query_x)).argmax(-1)    # all queries in one batch
        # each query in a batch of the whole support set plus that query (last), all batches in one pass
        q, s = query_x.shape[0], support_x.shape[0]
        support = support_x.reshape(1, s, *support_x.shape[1:]).expand(q, *support_x.shape)
        both = torch.cat([support, query_x.reshape(q, 1, *query_x.shape[1:])], 1)     # (Q, S+1, ...)
        nontrans = loop.logits(net.images(both), groups=q).view(q, s + 1, -1)[:, -1].argmax(-1)
        return trans, nontrans

    def _score(self, tasks, batches, ts, trans: Tensor, nontrans: Tensor) -> None:
        dtype = self.phi.dtype
        with torch.no_grad():
            for t in ts:
                self.adapt([(x[t], y[t]) for x, y in batches])
                tr, nt = self.predict(tasks.support_x[t].to(dtype), tasks.query_x[t].to(dtype))
                trans[t] = (tr == tasks.query_y[t]).float().mean()
                nontrans[t] = (nt == tasks.query_y[t]).float().mean()

    def _score_in_thread(self, *args) -> None:
        torch.set_num_threads(1)   # this thread's OpenMP and BLAS: one thread per task thread
        self._score(*args)

    def __call__(self, tasks) -> dict[str, Tensor]:
        """Per-task accuracy of a chunk of :class:`~reptile_lib.tasks.EvalTasks`, as ``evaluate.evaluate_tasks``."""
        n = tasks.query_y.shape[0]
        trans, nontrans = torch.zeros(n, dtype=torch.float32), torch.zeros(n, dtype=torch.float32)
        batches = [(x.to(self.phi.dtype), y) for x, y in tasks.batches()]
        workers = min(n, (self.threads or torch.get_num_threads()) if self.loop.native is not None else 1)
        if workers <= 1:
            self._score(tasks, batches, range(n), trans, nontrans)
            return {"transductive": trans, "nontransductive": nontrans}
        while len(self._clones) < workers - 1:
            self._clones.append(TaskEvaluator(*self._args, threads=1))
        from concurrent.futures import ThreadPoolExecutor

        evaluators = [self, *self._clones[:workers - 1]]
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers) as pool:
                jobs = [pool.submit(e._score_in_thread, tasks, batches, range(i, n, workers), trans, nontrans)
                        for i, e in enumerate(evaluators)]
                for job in jobs:
                    job.result()   # re-raises a worker's error
        finally:
            torch.set_num_threads(threads)   # the workers' setting is process-wide in part
        return {"transductive": trans, "nontransductive": nontrans}


def task_scorer(learner, params: Params, state: OptState) -> TaskEvaluator:
    """A :class:`TaskEvaluator` for a ``train.Learner`` at ``params`` (the ``scorer`` of ``train.monitor``)."""
    return TaskEvaluator(learner.model, learner.opt, params, state, learner.loss_fn.reduction)


def supports_evaluation(model: nn.Module, loss_fn, opt: InnerOptimizer, device: Any = "cpu") -> bool:
    """Whether :func:`sequential_evaluate` computes ``evaluate.evaluate`` here (the paper's networks, Adam with
    beta1 = 0 or SGD, the classification loss, a CPU).

    The queue scores with it on a CPU (``reproduce.eval_scorer``); ``benchmarks/results/cpu-*.json``
    time it (``sequential``) against ``evaluate.evaluate``'s 100 tasks per operation under ``vmap``.
    """
    return (torch.device(device).type == "cpu" and supports(model, opt)
            and getattr(loss_fn, "model", None) is model and getattr(loss_fn, "reduction", None) in ("sum", "mean"))


def sequential_evaluate(model: nn.Module, loss_fn, phi: Params, opt: InnerOptimizer, state: OptState, sampler,
                        shots: int, eval_batch: int, eval_iters: int, n_tasks: int, chunk: int = 100,
                        replacement: bool = False, progress: bool = False, kernels: str = "auto") -> dict[str, Tensor]:
    """:func:`reptile_lib.evaluate.evaluate` one task at a time on flat buffers (Section 7 protocol).

    Draws exactly the reference's tasks (``sampler.eval_tasks`` chunk by chunk, same chunk sizes) and
    returns the same per-task accuracies, both protocols from one adaptation per task.
    """
    if not supports_evaluation(model, loss_fn, opt, next(iter(phi.values())).device):
        raise TypeError("sequential_evaluate needs OmniglotNet or MiniImageNetNet with inner.CrossEntropy, Adam "
                        "(beta1 = 0) or SGD, on a CPU; use evaluate.evaluate")
    from ..evaluate import evaluate

    return evaluate(model, loss_fn, phi, opt, state, sampler, shots, eval_batch, eval_iters, n_tasks, chunk,
                    replacement, progress, score=TaskEvaluator(model, opt, phi, state, loss_fn.reduction, kernels))
