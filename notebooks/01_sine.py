# %% [markdown]
# # Figure 1: sine-wave regression
#
# Figure 1 of the paper {cite:p}`nichol2018reptile` meta-trains a small network on a family of
# regression tasks, $f_\tau(x) = a \sin(x + b)$ with amplitude $a \sim U[0.1, 5]$ and phase
# $b \sim U[0, 2\pi]$, and shows that after Reptile the network fits a new sine wave from ten points
# in a few gradient steps, where a network trained on all tasks jointly cannot.
#
# ```{note}
# This is a placeholder chapter: the sine-wave experiment (meta-training, Figure 1) is not
# reproduced on this page yet. Below, the library's Figure 1 network adapts to one fixed sine wave
# from its random initialisation, which shows the inner loop that Reptile meta-trains, and nothing more.
# ```

# %% tags=["parameters"]
profile = "paper"  # "paper": committed results, else a smoke run; "smoke": tiny runs now
device = "cpu"     # torch device for any training
seed = 0           # seed of the initialisation
retrain = False    # True: retrain at paper scale now (GPU) and rewrite results/
n_seeds = 1        # seeds per experiment when retraining

# %%
import matplotlib.pyplot as plt
import torch
from reptile_lib import inner, models, optim

# %% [markdown]
# The network of Figure 1 is a multi-layer perceptron $1 \to 64 \to 64 \to 1$. We adapt it, from a
# random (Glorot) initialisation, to $\sin(x)$ on ten evenly spaced points, with 32 steps of plain
# gradient descent (step 0.02), the inner loop of the authors' demonstration.

# %%
model = models.SineMLP(activation="tanh")
phi = models.init_params(model, torch.Generator().manual_seed(seed))
x_train = torch.linspace(-5, 5, 10)
x_grid = torch.linspace(-5, 5, 200)
loss_fn = inner.regression_loss(model)
sgd = optim.SGD(0.02)
adapted = inner.inner_loop(loss_fn, phi, sgd, sgd.init(phi), [(x_train, torch.sin(x_train))] * 32)
print(f"parameters: {sum(p.numel() for p in phi.values())}; training loss: step 1 {adapted.losses[0]:.3f}, "
      f"step 32 {adapted.losses[-1]:.3f}")
assert adapted.losses[-1] < adapted.losses[0]

# %%
with torch.no_grad():
    before = torch.func.functional_call(model, phi, (x_grid,))
    after = torch.func.functional_call(model, adapted.params, (x_grid,))
fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
ax.plot(x_grid, torch.sin(x_grid), "k--", label="target sin(x)")
ax.plot(x_grid, before, label="random initialisation")
ax.plot(x_grid, after, label="after 32 steps")
ax.scatter(x_train, torch.sin(x_train), c="k", s=12, zorder=3, label="10 training points")
ax.set_xlabel("x")
ax.legend(fontsize=8)
ax.set_title("One task, no meta-training (computed while this page was executed)", fontsize=9)
plt.show()
