"""Section 5: the Taylor expansion of the MAML, FOMAML and Reptile updates, checked exactly.

For k inner SGD steps of size alpha on independently drawn mini-batches, with gbar_i and Hbar_i
the gradient and Hessian of mini-batch i at the initial point phi, the paper shows (to O(alpha^2)
in the update g, where the parameter change is -alpha * g):

    E[g_MAML]    = AvgGrad - 2 (k-1) alpha AvgGradInner
    E[g_FOMAML]  = AvgGrad -   (k-1) alpha AvgGradInner
    E[g_Reptile] = k AvgGrad - (1/2) k (k-1) alpha AvgGradInner

with AvgGrad = E[gbar_1] and AvgGradInner = E[Hbar_2 gbar_1] = (1/2) E[d(gbar_1 . gbar_2)/dphi].

Here the expectations are computed exactly, not sampled: a finite family of tasks, each with a
finite set of mini-batches, and every ordered k-tuple of mini-batches enumerated. The updates
come from the core library (``meta_step``, ``maml_batch_gradient``); AvgGradInner from
Hessian-vector products (``torch.func.jvp`` of ``grad``), cross-checked by finite differences.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from . import params as P
from .algorithms import maml_batch_gradient, meta_step, step_weights
from .data.sine import sample_inputs, sample_tasks
from .inner import LossFn, regression_loss
from .models import SineMLP, init_params
from .optim import SGD
from .params import Params
from .results import experiment_main, provenance, results_document, write_document

ALGORITHMS = ("maml", "fomaml", "reptile")


@dataclass(frozen=True)
class TaylorConfig:
    """The finite task family of the check, and the alphas and k swept."""

    name: str = "taylor"
    n_tasks: int = 4                 # sine tasks of the family
    n_batches: int = 3               # mini-batches per task, each drawn uniformly and independently
    batch_size: int = 4              # points per mini-batch
    hidden: tuple[int, ...] = (8,)   # a small tanh net: all its third derivatives are non-zero
    activation: str = "tanh"
    ks: tuple[int, ...] = (2, 3, 4)
    alphas: tuple[float, ...] = tuple(round(10 ** (-4 + i / 4), 8) for i in range(9))  # 1e-4 .. 1e-2
    fd_step: float = 1e-5            # central finite differences for the AvgGradInner cross-check
    seed: int = 0
    # The interpretation (following -AvgGradInner aligns mini-batch gradients), on sine tasks:
    ip_hidden: tuple[int, ...] = (64, 64)
    ip_activation: str = "relu"
    ip_tasks: int = 100              # tasks whose gradients are aligned (and as many held out)
    ip_batches: int = 5              # mini-batches per task
    ip_batch_size: int = 10
    ip_steps: int = 20               # normalised steps along each direction
    ip_step_size: float = 0.02       # parameter-space length of each step


TAYLOR_PAPER = TaylorConfig()


def smoke(config: TaylorConfig = TAYLOR_PAPER) -> TaylorConfig:
    """Fewer alphas and a smaller interpretation run (seconds)."""
    return dataclasses.replace(config, alphas=(1e-4, 1e-3, 1e-2), ip_tasks=20, ip_steps=5,
                               ip_hidden=(16, 16))


def get_config(profile: str = "paper") -> TaylorConfig:
    if profile not in ("paper", "smoke"):
        raise ValueError(f"profile must be 'paper' or 'smoke', got {profile!r}")
    return TAYLOR_PAPER if profile == "paper" else smoke(TAYLOR_PAPER)


# ----------------------------------------------------------------------------- the finite family

@dataclass
class Family:
    """x, y: (tasks, batches, batch_size) in float64; ``loss_fn`` and a starting point ``phi``."""

    x: Tensor
    y: Tensor
    loss_fn: LossFn
    phi: Params


def make_family(n_tasks: int, n_batches: int, batch_size: int, hidden: tuple[int, ...], activation: str,
                seed: int) -> Family:
    """Sine tasks with fixed mini-batches, and a random float64 starting point for a small MLP."""
    gen = torch.Generator().manual_seed(seed)
    tasks = sample_tasks(n_tasks, gen, dtype=torch.float64)
    x = sample_inputs(n_tasks, n_batches * batch_size, gen, dtype=torch.float64)
    y = tasks(x)
    model = SineMLP(hidden, activation).double()
    phi = init_params(model, gen)
    # Glorot init leaves biases at 0; shift them so no symmetry hides a term of the expansion
    phi = {k: (v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype) if v.dim() == 1 else v)
           for k, v in phi.items()}
    shape = (n_tasks, n_batches, batch_size)
    return Family(x.reshape(shape), y.reshape(shape), regression_loss(model), phi)


def family_of(config: TaylorConfig) -> Family:
    return make_family(config.n_tasks, config.n_batches, config.batch_size, config.hidden,
                       config.activation, config.seed)


def enumerate_tuples(family: Family, k: int) -> list[tuple[Tensor, Tensor]]:
    """Every (task, ordered k-tuple of mini-batches) as one row: k pairs (x_i, y_i) of (T * B^k, n).

    A uniform mean over the rows is the exact expectation over tasks and independently drawn
    mini-batches (the same mini-batch may come twice, as with independent draws).
    """
    T, B, n = family.x.shape
    tuples = torch.tensor(list(itertools.product(range(B), repeat=k)))  # (B^k, k)
    rows_t = torch.arange(T).repeat_interleave(len(tuples))            # (T * B^k,)
    rows_b = tuples.repeat(T, 1)                                         # (T * B^k, k)
    return [(family.x[rows_t, rows_b[:, i]], family.y[rows_t, rows_b[:, i]]) for i in range(k)]


# ----------------------------------------------------------------------------- exact expected updates

def expected_updates(family: Family, k: int, alpha: float) -> dict[str, Tensor]:
    """E[g] of MAML, FOMAML and Reptile (flat vectors), with -alpha * g the parameter change.

    Reptile: (phi - phi_k) / alpha after k steps; FOMAML: g_k, the k-th step's gradient;
    MAML: the gradient of the k-th mini-batch's loss through the k - 1 first steps.
    """
    batches = enumerate_tuples(family, k)
    opt, phi = SGD(alpha), family.phi
    # meta_step with eps = 1 moves phi to phi + mean over rows of the weighted inner updates
    reptile = meta_step(family.loss_fn, phi, opt, {}, batches, 1.0, step_weights(k)).params
    fomaml = meta_step(family.loss_fn, phi, opt, {}, batches, 1.0, step_weights(k, [k])).params
    flat = P.flatten(phi)
    g_fomaml = (flat - P.flatten(fomaml)) / alpha
    if k == 1:  # no inner step to differentiate through: MAML's update is the gradient, as FOMAML's
        g_maml = g_fomaml
    else:
        g_maml = P.flatten(maml_batch_gradient(family.loss_fn, phi, opt, batches[:-1], batches[-1])[0])
    return {"maml": g_maml,
            "fomaml": g_fomaml,
            "reptile": (flat - P.flatten(reptile)) / alpha}


def _task_loss(family: Family):
    """L_t(phi): the mean loss of task t's mini-batches (the expectation over one draw)."""
    def loss_t(phi: Params, x_t: Tensor, y_t: Tensor) -> Tensor:
        return vmap(family.loss_fn, in_dims=(None, 0, 0))(phi, x_t, y_t).mean()
    return loss_t


def avg_grad(family: Family) -> Tensor:
    """AvgGrad = E[gbar_1]: the gradient of the mean loss at phi."""
    g = vmap(grad(_task_loss(family)), in_dims=(None, 0, 0))(family.phi, family.x, family.y)
    return P.flatten(P.mean_over_tasks(g))


def avg_grad_inner(family: Family) -> Tensor:
    """AvgGradInner = E[Hbar_2 gbar_1], exactly: per task, (mean Hessian) x (mean gradient) by a HVP.

    With independent draws E[H_2 g_1 | task] = E[H | task] E[g | task], and E[H | task] is the
    Hessian of the task's mean loss, so one Hessian-vector product per task suffices.
    """
    loss_t = _task_loss(family)

    def per_task(x_t: Tensor, y_t: Tensor) -> Params:
        g_t = grad(loss_t)(family.phi, x_t, y_t)
        _, hvp = jvp(lambda p: grad(loss_t)(p, x_t, y_t), (family.phi,), (g_t,))
        return hvp

    return P.flatten(P.mean_over_tasks(vmap(per_task)(family.x, family.y)))


def gradient_inner_product(family: Family, phi: Params | None = None) -> Tensor:
    """``E[gbar_1 . gbar_2]`` for two independent draws from the same task = ``mean_t |E[g | t]|^2``."""
    phi = family.phi if phi is None else phi
    g = vmap(grad(_task_loss(family)), in_dims=(None, 0, 0))(phi, family.x, family.y)
    return sum((v.reshape(v.shape[0], -1) ** 2).sum(1) for v in g.values()).mean()


def avg_grad_inner_fd(family: Family, h: float = 1e-5) -> Tensor:
    """(1/2) d/dphi E[gbar_1 . gbar_2] by central finite differences, coordinate by coordinate."""
    flat = P.flatten(family.phi)
    shapes = [(k, v.shape, v.numel()) for k, v in family.phi.items()]

    def unflatten(vec: Tensor) -> Params:
        out, i = {}, 0
        for k, shape, n in shapes:
            out[k] = vec[i:i + n].reshape(shape)
            i += n
        return out

    out = torch.empty_like(flat)
    for i in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[i] = h
        plus = gradient_inner_product(family, unflatten(flat + e))
        minus = gradient_inner_product(family, unflatten(flat - e))
        out[i] = (plus - minus) / (2 * h) / 2
    return out


def predicted_updates(avg_g: Tensor, agi: Tensor, k: int, alpha: float) -> dict[str, Tensor]:
    """The paper's leading terms (Section 5): what E[g] equals up to O(alpha^2)."""
    return {"maml": avg_g - 2 * (k - 1) * alpha * agi,
            "fomaml": avg_g - (k - 1) * alpha * agi,
            "reptile": k * avg_g - 0.5 * k * (k - 1) * alpha * agi}


def zeroth_order(avg_g: Tensor, k: int) -> dict[str, Tensor]:
    """The same without the AvgGradInner term (error O(alpha) in g): the contrast for the slope plot."""
    return {"maml": avg_g, "fomaml": avg_g, "reptile": k * avg_g}


def fit_slope(alphas, errors) -> tuple[float, float]:
    """Least-squares slope of log(error) against log(alpha), and its standard error."""
    x = torch.log(torch.as_tensor(alphas, dtype=torch.float64))
    y = torch.log(torch.as_tensor(errors, dtype=torch.float64))
    xm, ym = x - x.mean(), y - y.mean()
    slope = float((xm * ym).sum() / (xm * xm).sum())
    resid = ym - slope * xm
    n = len(x)
    se = float(torch.sqrt((resid ** 2).sum() / max(n - 2, 1) / (xm * xm).sum())) if n > 2 else float("nan")
    return slope, se


def expansion_errors(family: Family, ks, alphas) -> dict:
    """For each algorithm and k: ``|alpha (E[g] - prediction)|`` over the alphas, and the fitted slopes."""
    avg_g, agi = avg_grad(family), avg_grad_inner(family)
    out: dict = {"alphas": [float(a) for a in alphas], "errors": {}, "errors_zeroth": {}, "slopes": {},
                 "slopes_zeroth": {}, "norm_avg_grad": float(avg_g.norm()), "norm_avg_grad_inner": float(agi.norm())}
    for k in ks:
        for alpha in alphas:
            exp_g = expected_updates(family, k, alpha)
            pred, zero = predicted_updates(avg_g, agi, k, alpha), zeroth_order(avg_g, k)
            for alg in ALGORITHMS:
                key = f"{alg}_k{k}"
                out["errors"].setdefault(key, []).append(float(alpha * (exp_g[alg] - pred[alg]).norm()))
                out["errors_zeroth"].setdefault(key, []).append(float(alpha * (exp_g[alg] - zero[alg]).norm()))
        for alg in ALGORITHMS:
            key = f"{alg}_k{k}"
            out["slopes"][key] = fit_slope(alphas, out["errors"][key])
            out["slopes_zeroth"][key] = fit_slope(alphas, out["errors_zeroth"][key])
    return out


def k1_identity(family: Family, alphas=(1e-2, 1e-1, 0.5), eps: float = 0.7) -> dict:
    """k = 1: Reptile's step over a meta-batch of all (task, mini-batch) pairs is one SGD step on
    the mean loss (joint training), phi - eps * alpha * grad E[L], exactly (not only to O(alpha^2))."""
    batches = enumerate_tuples(family, 1)
    joint = avg_grad(family)
    worst_step, worst_g = 0.0, 0.0
    for alpha in alphas:
        reptile = meta_step(family.loss_fn, family.phi, SGD(alpha), {}, batches, eps, step_weights(1)).params
        sgd, _ = SGD(eps * alpha).step(family.phi, _unflatten_like(joint, family.phi), {})
        worst_step = max(worst_step, float((P.flatten(reptile) - P.flatten(sgd)).abs().max()))
        g = expected_updates(family, 1, alpha)
        worst_g = max(worst_g, max(float((g[a] - joint).abs().max()) for a in ALGORITHMS))
    return {"alphas": list(alphas), "eps": eps, "max_abs_diff_step": worst_step,
            "max_abs_diff_update": worst_g, "norm_avg_grad": float(joint.norm())}


def _unflatten_like(vec: Tensor, like: Params) -> Params:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vec[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


# ----------------------------------------------------------------------------- the interpretation

def pairwise_alignment(loss_fn: LossFn, phi: Params, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over tasks and ordered pairs i != j of mini-batches of g_i . g_j, and of cos(g_i, g_j).

    x, y: (tasks, batches, points). The inner product is what AvgGradInner climbs; the cosine
    tells whether the gradients point the same way or merely grew longer.
    """
    g = vmap(vmap(grad(loss_fn), in_dims=(None, 0, 0)), in_dims=(None, 0, 0))(phi, x, y)
    flat = torch.cat([v.reshape(*v.shape[:2], -1) for v in g.values()], dim=2)  # (T, B, D)
    B = flat.shape[1]
    off_diagonal = 1 - torch.eye(B, dtype=flat.dtype)
    gram = flat @ flat.transpose(1, 2)                                           # (T, B, B)
    norms = gram.diagonal(dim1=1, dim2=2).clamp_min(1e-300).sqrt()
    cos = gram / (norms[:, :, None] * norms[:, None, :])
    pairs = B * (B - 1)
    return (gram * off_diagonal).sum((1, 2)).div(pairs).mean(), (cos * off_diagonal).sum((1, 2)).div(pairs).mean()


def alignment_experiment(config: TaylorConfig) -> dict:
    """Steps along +AvgGradInner (i.e. following -AvgGradInner as a gradient) raise the inner
    product of gradients of different mini-batches of the same task; compare with -AvgGrad and a
    random direction, on the tasks used and on held-out tasks."""
    gen = torch.Generator().manual_seed(config.seed + 1)
    model = SineMLP(config.ip_hidden, config.ip_activation).double()
    loss_fn = regression_loss(model)
    phi0 = init_params(model, gen)
    shape = (config.ip_tasks, config.ip_batches, config.ip_batch_size)

    def draw():
        tasks = sample_tasks(config.ip_tasks, gen, dtype=torch.float64)
        x = sample_inputs(config.ip_tasks, config.ip_batches * config.ip_batch_size, gen, dtype=torch.float64)
        return x.reshape(shape), tasks(x).reshape(shape)

    (x, y), (x_held, y_held) = draw(), draw()
    mean_loss = lambda p, xx, yy: vmap(vmap(loss_fn, in_dims=(None, 0, 0)), in_dims=(None, 0, 0))(p, xx, yy).mean()
    ip = lambda p: pairwise_alignment(loss_fn, p, x, y)[0]

    def direction(name: str, p: Params) -> Params:
        if name == "+AvgGradInner":        # (1/2) grad of the pairwise inner product = E[H_j g_i], i != j
            d = P.scale(grad(ip)(p), 0.5)
        elif name == "-AvgGrad":
            d = P.scale(grad(mean_loss)(p, x, y), -1.0)
        else:
            d = {k: torch.randn(v.shape, generator=dir_gen, dtype=v.dtype) for k, v in p.items()}
        return P.scale(d, config.ip_step_size / float(P.norm(d)))

    out = {}
    for name in ("+AvgGradInner", "-AvgGrad", "random"):
        dir_gen = torch.Generator().manual_seed(config.seed + 2)
        p = phi0
        rows = {"inner_product": [], "cosine": [], "inner_product_held_out": [], "cosine_held_out": [],
                "loss": []}
        for step in range(config.ip_steps + 1):
            for suffix, (xx, yy) in (("", (x, y)), ("_held_out", (x_held, y_held))):
                inner, cos = pairwise_alignment(loss_fn, p, xx, yy)
                rows["inner_product" + suffix].append(float(inner))
                rows["cosine" + suffix].append(float(cos))
            rows["loss"].append(float(mean_loss(p, x, y)))
            if step < config.ip_steps:
                p = P.add(p, direction(name, p))
        out[name] = rows
    return out


# ----------------------------------------------------------------------------- the chapter's results

def run_experiment(config: TaylorConfig = TAYLOR_PAPER, profile: str = "paper", out: str | Path | None = None) -> dict:
    """Everything the chapter shows, as a results document (written to ``out`` if given)."""
    t0 = time.time()
    family = family_of(config)
    errs = expansion_errors(family, config.ks, config.alphas)
    agi = avg_grad_inner(family)
    agi_fd = avg_grad_inner_fd(family, config.fd_step)
    k1 = k1_identity(family)
    align = alignment_experiment(config)
    n = config.n_tasks
    exact = lambda v: {"mean": float(v), "ci95": 0.0, "n_tasks": n}
    metrics = {f"step_error_slope_{key}": {"mean": s, "ci95": 1.96 * se, "n_tasks": n}
               for key, (s, se) in errs["slopes"].items()}
    metrics.update({f"step_error_slope_zeroth_{key}": {"mean": s, "ci95": 1.96 * se, "n_tasks": n}
                    for key, (s, se) in errs["slopes_zeroth"].items()})
    metrics["avg_grad_inner_fd_relative_error"] = exact((agi - agi_fd).norm() / agi.norm())
    metrics["k1_identity_max_abs_diff"] = exact(k1["max_abs_diff_step"])
    for name, rows in align.items():
        tag = {"+AvgGradInner": "agi", "-AvgGrad": "avg_grad", "random": "random"}[name]
        metrics[f"inner_product_change_{tag}"] = {
            "mean": rows["inner_product"][-1] - rows["inner_product"][0], "ci95": 0.0, "n_tasks": config.ip_tasks}
        for q in ("inner_product_held_out", "cosine", "cosine_held_out", "loss"):
            metrics[f"{q}_change_{tag}"] = {"mean": rows[q][-1] - rows[q][0], "ci95": 0.0, "n_tasks": config.ip_tasks}
    extra = {"expansion": errs, "avg_grad_inner": agi.tolist(), "avg_grad_inner_fd": agi_fd.tolist(),
             "k1_identity": k1, "alignment": align, "n_params": int(P.flatten(family.phi).numel())}
    prov = provenance("cpu", [config.seed], time.time() - t0, True)
    doc = results_document(config.name, profile, config, metrics, prov, extra)
    if out is not None:
        write_document(out, doc)
    return doc


def main(argv=None) -> None:
    """``python -m reptile_lib.taylor [--profile paper]``: recompute and write ``results/taylor.json``."""
    experiment_main("taylor", get_config, run_experiment, main.__doc__, argv)


if __name__ == "__main__":
    main()
