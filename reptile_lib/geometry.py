"""Section 6: Reptile as (approximate) SGD on the mean squared distance to the tasks' solution sets.

Each task tau has a set W_tau of optimal weights. The paper's objective is

    minimise_phi  E_tau[ (1/2) D(phi, W_tau)^2 ],  whose gradient is  E_tau[ phi - P_{W_tau}(phi) ],

so an SGD step is phi <- phi + eps (P_{W_tau}(phi) - phi). Reptile takes the same step with the
projection P replaced by k SGD steps on the task's loss, U^k_tau(phi).

Two 2-D task families where W_tau and P_{W_tau} are exact:

- lines: task = one point (x_tau, y_tau) for the model f(x) = w_1 x + w_2 with loss
  (1/2)(w_1 x + w_2 - y)^2; W_tau = {w : a . w = b} with a = (x_tau, 1), b = y_tau. The optimum of
  the mean squared distance is a weighted least-squares solution (closed form), and so is
  Reptile's fixed point for any k (weights ``1 - (1 - alpha |a|^2)^k``), which tends to it as k grows;
  k = 1 gives ordinary least squares, i.e. joint training.
- circles: task = a range measurement, "be at distance r_tau from the beacon b_tau", with loss
  ``(|w - b|^2 - r^2)^2 / (8 r^2)``; W_tau is that circle. The optimum is found by an independent
  solver (grid search, then Newton's method on the exact gradient and Hessian).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.func import vmap

from . import params as P
from .algorithms import meta_step, meta_step_size, step_weights
from .inner import inner_loop
from .optim import SGD
from .params import Params
from .results import experiment_main, provenance, results_document, write_document

FAMILIES = ("lines", "circles")


@dataclass(frozen=True)
class GeometryConfig:
    name: str = "geometry"
    n_lines: int = 5
    n_circles: int = 4
    seed: int = 0
    start: tuple[float, float] = (-1.5, 2.5)     # phi_0 of every run (lines); circles use circle_start
    circle_start: tuple[float, float] = (2.0, 2.0)
    learning_rate: float = 0.1                   # alpha, the inner SGD step
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # inner steps of the deterministic runs
    full_iters: int = 3000                       # deterministic runs (meta-batch = all tasks, eps = 1):
    full_tol: float = 1e-12                      # ... stop when a step moves phi less than this
    trajectory_ks: tuple[int, ...] = (1, 4, 32)  # stochastic runs drawn in the figure
    meta_step: float = 0.5                       # stochastic runs: eps annealed linearly to ...
    meta_step_final: float = 0.0
    meta_iters: int = 1500                       # ... over this many one-task iterations
    n_runs: int = 20                             # stochastic runs (seeds) per method, in parallel


GEOMETRY_PAPER = GeometryConfig()


def smoke(config: GeometryConfig = GEOMETRY_PAPER) -> GeometryConfig:
    return dataclasses.replace(config, ks=(1, 4, 16), full_iters=300, full_tol=1e-8, trajectory_ks=(1, 16),
                               meta_iters=150, n_runs=4)


def get_config(profile: str = "paper") -> GeometryConfig:
    if profile not in ("paper", "smoke"):
        raise ValueError(f"profile must be 'paper' or 'smoke', got {profile!r}")
    return GEOMETRY_PAPER if profile == "paper" else smoke(GEOMETRY_PAPER)


# ----------------------------------------------------------------------------- the two families

@dataclass
class Family:
    """Tasks as the core's (x, y) batches: x (T, 1) or (T, 1, 2), y (T, 1); exact projections."""

    kind: str
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        w = params["w"]
        if self.kind == "lines":  # (1/2)(w1 x + w2 - y)^2
            return 0.5 * ((w[0] * x + w[1] - y) ** 2).mean()
        d2 = ((w - x) ** 2).sum(-1)  # circles: (|w - c|^2 - r^2)^2 / (8 r^2) ~ (1/2)(|w - c| - r)^2
        return ((d2 - y ** 2) ** 2 / (8 * y ** 2)).mean()

    def project(self, w: Tensor) -> Tensor:
        """P_{W_tau}(w) for every task: (T, 2) (w: (2,) or (T, 2))."""
        if self.kind == "lines":
            a, b = self.normals(), self.y[:, 0]
            return w - ((a * w).sum(-1) - b)[:, None] * a / (a * a).sum(-1, keepdim=True)
        c, r = self.x[:, 0], self.y[:, 0]
        d = w - c
        return c + r[:, None] * d / d.norm(dim=-1, keepdim=True)

    def normals(self) -> Tensor:
        """Lines only: a_tau = (x_tau, 1), so W_tau = {w : a . w = y_tau}."""
        return torch.stack([self.x[:, 0], torch.ones_like(self.x[:, 0])], -1)

    def mean_sq_distance(self, w: Tensor) -> Tensor:
        """E_tau[(1/2) D(w, W_tau)^2], the objective of Section 6."""
        return 0.5 * ((self.project(w) - w) ** 2).sum(-1).mean()


def make_lines(n: int, generator: torch.Generator) -> Family:
    """Points near y = 0.5 x + 1, one per task: the lines W_tau almost meet near (0.5, 1)."""
    x = -2 + 4 * torch.rand(n, generator=generator, dtype=torch.float64)
    y = 0.5 * x + 1 + torch.randn(n, generator=generator, dtype=torch.float64)
    return Family("lines", x[:, None], y[:, None])


def make_circles(n: int, generator: torch.Generator) -> Family:
    """Beacons around the origin and ranges to a point near (0.3, 0.2), with noisy ranges."""
    angle = 2 * math.pi * (torch.arange(n, dtype=torch.float64) / n
                           + 0.1 * torch.rand(n, generator=generator, dtype=torch.float64))
    c = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    target = torch.tensor([0.3, 0.2], dtype=torch.float64)
    r = (c - target).norm(dim=-1) * (1 + 0.4 * torch.randn(n, generator=generator, dtype=torch.float64))
    return Family("circles", c[:, None, :], r[:, None])


def families(config: GeometryConfig) -> dict[str, Family]:
    gen = torch.Generator().manual_seed(config.seed)
    return {"lines": make_lines(config.n_lines, gen), "circles": make_circles(config.n_circles, gen)}


def start_of(config: GeometryConfig, kind: str) -> Tensor:
    return torch.tensor(config.start if kind == "lines" else config.circle_start, dtype=torch.float64)


# ----------------------------------------------------------------------------- optima, exactly

def optimum(family: Family) -> Tensor:
    """argmin_w E[(1/2) D(w, W_tau)^2]: weighted least squares (lines), grid + Newton (circles)."""
    if family.kind == "lines":
        return weighted_least_squares(family, 1 / (family.normals() ** 2).sum(-1))
    return _circles_optimum(family)


def weighted_least_squares(family: Family, weights: Tensor) -> Tensor:
    """argmin_w sum_tau weights_tau (a_tau . w - b_tau)^2 (lines)."""
    a, b = family.normals(), family.y[:, 0]
    A = (weights[:, None, None] * a[:, :, None] * a[:, None, :]).sum(0)
    rhs = (weights[:, None] * a * b[:, None]).sum(0)
    return torch.linalg.solve(A, rhs)


def joint_training_optimum(family: Family) -> Tensor:
    """Lines: the minimiser of the mean loss (ordinary least squares), Reptile's k = 1 fixed point."""
    return weighted_least_squares(family, torch.ones(len(family), dtype=torch.float64))


def reptile_fixed_point_lines(family: Family, k: int, alpha: float) -> Tensor:
    """Lines: k SGD steps move phi by c_tau (P(phi) - phi), ``c_tau = 1 - (1 - alpha |a|^2)^k``, so
    Reptile's fixed point is weighted least squares with weights ``c_tau / |a_tau|^2``."""
    sq = (family.normals() ** 2).sum(-1)
    return weighted_least_squares(family, (1 - (1 - alpha * sq) ** k) / sq)


def _circles_optimum(family: Family, box: float = 4.0, n: int = 801, newton_iters: int = 50) -> Tensor:
    """Global minimum of the mean squared distance to circles: grid search, then Newton's method."""
    c, r = family.x[:, 0], family.y[:, 0]
    axis = torch.linspace(-box, box, n, dtype=torch.float64)
    pts = torch.cartesian_prod(axis, axis)                                     # (n^2, 2)
    d = (pts[:, None, :] - c[None]).norm(dim=-1)                                # (n^2, T)
    w = pts[(0.5 * (d - r) ** 2).mean(1).argmin()].clone()
    for _ in range(newton_iters):
        diff = w - c
        dist = diff.norm(dim=-1)
        u = diff / dist[:, None]
        g = ((dist - r)[:, None] * u).mean(0)
        eye = torch.eye(2, dtype=torch.float64)
        uu = u[:, :, None] * u[:, None, :]
        H = (uu + ((dist - r) / dist)[:, None, None] * (eye - uu)).mean(0)
        w = w - torch.linalg.solve(H, g)
    return w


# ----------------------------------------------------------------------------- the runs

def reptile_full(family: Family, k: int, alpha: float, iters: int, start: Tensor, eps: float = 1.0,
                 tol: float = 0.0) -> Tensor:
    """Deterministic Reptile (Algorithm 2 with the meta-batch = every task) until a step is below
    ``tol`` or ``iters`` steps: the trajectory (steps + 1, 2)."""
    phi, traj = {"w": start.clone()}, [start.clone()]
    batches = [(family.x, family.y)] * k
    for _ in range(iters):
        phi = meta_step(family.loss, phi, SGD(alpha), {}, batches, eps, step_weights(k)).params
        traj.append(phi["w"].clone())
        if float((traj[-1] - traj[-2]).norm()) < tol:
            break
    return torch.stack(traj)


def projection_full(family: Family, iters: int, start: Tensor, eps: float = 1.0, tol: float = 0.0) -> Tensor:
    """Gradient descent on E[(1/2) D^2]: phi <- phi + eps * mean_tau (P_tau(phi) - phi)."""
    w, traj = start.clone(), [start.clone()]
    for _ in range(iters):
        w = w + eps * (family.project(w) - w).mean(0)
        traj.append(w.clone())
        if float((traj[-1] - traj[-2]).norm()) < tol:
            break
    return torch.stack(traj)


def stochastic_runs(family: Family, method: str, config: GeometryConfig, start: Tensor, k: int = 1,
                    seed: int = 0) -> Tensor:
    """``config.n_runs`` runs in parallel, one random task per iteration, eps annealed linearly.

    method 'projection': phi <- phi + eps (P_tau(phi) - phi)   (SGD on E[(1/2) D^2])
    method 'reptile':    phi <- phi + eps (U^k_tau(phi) - phi) (Algorithm 1, serial)
    Returns the trajectories (n_runs, meta_iters + 1, 2).
    """
    gen = torch.Generator().manual_seed(seed)
    R = config.n_runs
    w = start.expand(R, 2).clone()
    opt = SGD(config.learning_rate)
    adapt = vmap(lambda p, x, y: inner_loop(family.loss, p, opt, {}, [(x, y)] * k).params)
    traj = [w.clone()]
    for it in range(config.meta_iters):
        eps = meta_step_size(config.meta_step, config.meta_step_final, it, config.meta_iters)
        tau = torch.randint(len(family), (R,), generator=gen)
        if method == "projection":
            target = torch.stack([family.project(w[i])[tau[i]] for i in range(R)])
        elif method == "reptile":
            target = adapt({"w": w}, family.x[tau], family.y[tau])["w"]
        else:
            raise ValueError(f"method must be 'projection' or 'reptile', got {method!r}")
        w = P.interpolate({"w": w}, {"w": target}, eps)["w"]   # phi + eps (target - phi)
        traj.append(w.clone())
    return torch.stack(traj, 1)


def _thin(traj: Tensor, keep: int = 120) -> list:
    """At most ``keep`` points of a trajectory (first and last kept), rounded: for drawing only."""
    if len(traj) > keep:
        traj = traj[torch.linspace(0, len(traj) - 1, keep).round().long().unique()]
    return [[round(float(v), 6) for v in p] for p in traj]


def _ci95(values: Tensor) -> float:
    return float(1.96 * values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def run_family(family: Family, config: GeometryConfig) -> dict:
    """Optima, deterministic runs for every k, stochastic runs for the drawn ks; distances to the optimum."""
    start = start_of(config, family.kind)
    opt = optimum(family)
    out: dict = {"kind": family.kind, "x": family.x.tolist(), "y": family.y.tolist(), "start": start.tolist(),
                 "optimum": opt.tolist(), "objective_at_optimum": float(family.mean_sq_distance(opt)),
                 "grad_norm_at_optimum": float((family.project(opt) - opt).mean(0).norm())}
    if family.kind == "lines":
        out["joint_training_optimum"] = joint_training_optimum(family).tolist()
        out["reptile_fixed_point_analytic"] = {
            str(k): reptile_fixed_point_lines(family, k, config.learning_rate).tolist() for k in config.ks}
    proj = projection_full(family, config.full_iters, start, tol=config.full_tol)
    out["projection_full"] = {"trajectory": _thin(proj), "final": proj[-1].tolist(),
                              "iterations": len(proj) - 1, "distance": float((proj[-1] - opt).norm())}
    out["reptile_full"] = {}
    for k in config.ks:
        traj = reptile_full(family, k, config.learning_rate, config.full_iters, start, tol=config.full_tol)
        out["reptile_full"][str(k)] = {"trajectory": _thin(traj), "final": traj[-1].tolist(),
                                       "iterations": len(traj) - 1, "distance": float((traj[-1] - opt).norm())}
    out["stochastic"] = {}
    runs = {"projection": stochastic_runs(family, "projection", config, start, seed=config.seed)}
    for k in config.trajectory_ks:
        runs[f"reptile_k{k}"] = stochastic_runs(family, "reptile", config, start, k, seed=config.seed)
    for name, traj in runs.items():
        dist = (traj[:, -1] - opt).norm(dim=-1)
        # the runs' mean end point averages the SGD noise away and leaves the bias of the method
        out["stochastic"][name] = {"trajectory_run0": _thin(traj[0]), "finals": traj[:, -1].tolist(),
                                   "distance_mean": float(dist.mean()), "distance_ci95": _ci95(dist),
                                   "distance_of_mean_final": float((traj[:, -1].mean(0) - opt).norm())}
    return out


def run_experiment(config: GeometryConfig = GEOMETRY_PAPER, profile: str = "paper",
                   out: str | Path | None = None) -> dict:
    """Both families; metrics are distances of final phi to the optimum (written to ``out`` if given)."""
    t0 = time.time()
    fams = families(config)
    extra = {"learning_rate": config.learning_rate}
    metrics = {}
    for name, fam in fams.items():
        r = run_family(fam, config)
        extra[name] = r
        n = len(fam)
        metrics[f"{name}_distance_projection_full"] = {"mean": r["projection_full"]["distance"], "ci95": 0.0,
                                                       "n_tasks": n}
        for k, v in r["reptile_full"].items():
            metrics[f"{name}_distance_reptile_full_k{k}"] = {"mean": v["distance"], "ci95": 0.0, "n_tasks": n}
        for m, v in r["stochastic"].items():
            metrics[f"{name}_distance_stochastic_{m}"] = {"mean": v["distance_mean"], "ci95": v["distance_ci95"],
                                                          "n_tasks": n, "n_runs": config.n_runs}
            metrics[f"{name}_distance_of_mean_final_stochastic_{m}"] = {
                "mean": v["distance_of_mean_final"], "ci95": 0.0, "n_tasks": n, "n_runs": config.n_runs}
    prov = provenance("cpu", [config.seed], time.time() - t0, True)
    doc = results_document(config.name, profile, config, metrics, prov, extra)
    if out is not None:
        write_document(out, doc)
    return doc


def main(argv=None) -> None:
    """``python -m reptile_lib.geometry [--profile paper]``: recompute and write ``results/geometry.json``."""
    experiment_main("geometry", get_config, run_experiment, main.__doc__, argv)


if __name__ == "__main__":
    main()
