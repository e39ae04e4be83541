# %% [markdown]
# # Section 6: the geometric view
#
# Section 6 of the paper {cite:p}`nichol2018reptile` reads Reptile as moving $\phi$ towards the
# sets $\mathcal W_\tau$ of optimal weights of the tasks: it minimises
# $\mathbb{E}_\tau\big[\tfrac12 D(\phi, \mathcal W_\tau)^2\big]$, whose gradient is
# $\mathbb{E}_\tau[\phi - P_{\mathcal W_\tau}(\phi)]$. An SGD step on it is
#
# $$
# \phi \leftarrow \phi + \epsilon\,\big(P_{\mathcal W_\tau}(\phi) - \phi\big),
# $$
#
# and Reptile replaces the projection $P_{\mathcal W_\tau}(\phi)$ by the result of $k$ inner steps.
#
# ```{note}
# This is a placeholder chapter: the figures of the geometric view are not on this page yet.
# Below, one small case is checked: for an under-determined linear regression, the set of optimal
# weights is a plane, and many inner steps of gradient descent from $\phi$ end at its projection.
# ```

# %% tags=["parameters"]
profile = "paper"  # "paper": committed results, else a smoke run; "smoke": tiny runs now
device = "cpu"     # torch device for any training
seed = 0           # seed of the task
retrain = False    # True: retrain at paper scale now (GPU) and rewrite results/
n_seeds = 1        # seeds per experiment when retraining

# %%
import torch
from torch import nn
from reptile_lib import inner, optim

# %% [markdown]
# A task with 2 equations and 5 unknowns, $X w = y$: its solutions form a 3-dimensional plane
# $\mathcal W_\tau$, and the projection of $\phi$ onto it is
# $\phi + X^\top (X X^\top)^{-1} (y - X\phi)$.

# %%
g = torch.Generator().manual_seed(seed)
X, y = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)
model = nn.Linear(5, 1, bias=False).double()
phi = {"weight": torch.randn(1, 5, generator=g, dtype=torch.float64)}
loss_fn = lambda p, x, t: inner.regression_loss(model)(p, x, t[:, None])  # noqa: E731  (targets as a column)
sgd = optim.SGD(float(1 / torch.linalg.eigvalsh(X @ X.T).max()))  # below 2 / (largest curvature): converges
w = phi["weight"][0]
projection = w + X.T @ torch.linalg.solve(X @ X.T, y - X @ w)
for k in (1, 10, 100, 300):
    adapted = inner.inner_loop(loss_fn, phi, sgd, {}, [(X, y)] * k).params["weight"][0]
    print(f"k = {k:4d}: distance to the projection {float((adapted - projection).norm()):.2e}")
