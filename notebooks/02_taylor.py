# %% [markdown]
# # Section 5: the Taylor expansion
#
# Section 5 of the paper {cite:p}`nichol2018reptile` expands the updates of MAML, first-order MAML
# and Reptile to second order in the inner step size $\alpha$. With $\bar g_i$ and $\bar H_i$ the
# gradient and Hessian of mini-batch $i$ at the initial point, the expected updates over $k$ inner
# steps are
#
# $$
# \begin{aligned}
# \mathbb{E}[g_\text{MAML}] &= \text{AvgGrad} - 2(k-1)\,\alpha\,\text{AvgGradInner},\\
# \mathbb{E}[g_\text{FOMAML}] &= \text{AvgGrad} - (k-1)\,\alpha\,\text{AvgGradInner},\\
# \mathbb{E}[g_\text{Reptile}] &= k\,\text{AvgGrad} - \tfrac12 k(k-1)\,\alpha\,\text{AvgGradInner},
# \end{aligned}
# $$
#
# where $\text{AvgGrad} = \mathbb{E}[\bar g_1]$ and
# $\text{AvgGradInner} = \mathbb{E}[\bar H_2 \bar g_1] = \tfrac12\,\mathbb{E}\big[\partial(\bar g_1 \cdot \bar g_2)/\partial\phi_1\big]$.
#
# ```{note}
# This is a placeholder chapter: the numerical check of these expansions is not on this page yet.
# Below, the library verifies the simplest case only: with $k = 1$, Reptile's update is plain
# gradient descent on the loss ("joint training").
# ```

# %% tags=["parameters"]
profile = "paper"  # "paper": committed results, else a smoke run; "smoke": tiny runs now
device = "cpu"     # torch device for any training
seed = 0           # seed of the initialisation
retrain = False    # True: retrain at paper scale now (GPU) and rewrite results/
n_seeds = 1        # seeds per experiment when retraining

# %%
import torch
from reptile_lib import algorithms, inner, models, optim
from reptile_lib import params as P

# %% [markdown]
# One Reptile meta-step with $k = 1$ inner SGD step of size $\alpha$ and outer step $\epsilon = 1$
# moves $\phi$ by $-\alpha \nabla L(\phi)$. We compare the library's `meta_step` with the gradient
# computed directly by autograd, on one mini-batch of a sine task.

# %% tags=["nbval-check-output"]
torch.manual_seed(seed)
model = models.SineMLP()
phi = models.init_params(model, torch.Generator().manual_seed(seed))
loss_fn = inner.regression_loss(model)
x = torch.linspace(-5, 5, 10)
y = 2.0 * torch.sin(x + 0.5)
alpha = 0.01
sgd = optim.SGD(alpha)
step = algorithms.meta_step(loss_fn, phi, sgd, sgd.init(phi), [(x[None], y[None])], eps=1.0,
                            weights=algorithms.step_weights(1))
grads = torch.func.grad(loss_fn)(phi, x, y)
reptile_update = P.subtract(step.params, phi)
gap = max(float((reptile_update[k] + alpha * grads[k]).abs().max()) for k in phi)
print(f"largest difference between Reptile's k=1 update and -alpha * gradient: {'< 1e-6' if gap < 1e-6 else gap}")
