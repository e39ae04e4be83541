# %% [markdown]
# # Table 1: Mini-ImageNet, and CIFAR-FS in its place
#
# Table 1 of the paper {cite:p}`nichol2018reptile` reports 5-way 1- and 5-shot accuracy on
# Mini-ImageNet {cite:p}`vinyals2016matching,ravi2017optimization`. **No copy of Mini-ImageNet's
# images is available to this project**, so this chapter uses CIFAR-FS
# {cite:p}`bertinetto2019closedform` as a stand-in: real photographs from CIFAR-100
# {cite:p}`krizhevsky2009cifar` with the same 64/16/20 class layout and 600 images per class, but
# 32×32 pixels instead of 84×84. We train Mini-ImageNet's network with Mini-ImageNet's
# hyper-parameters on it, and report the results as CIFAR-FS numbers, never as Mini-ImageNet ones.
# FC100 {cite:p}`oreshkin2018tadam`, CIFAR-100 split by superclass, is a second stand-in.

# %% tags=["parameters"]
profile = "paper"  # "paper": committed results, else a smoke run; "smoke": tiny runs now
device = "cpu"     # torch device for any training
seed = 0           # first seed
retrain = False    # True: retrain at paper scale now (GPU) and rewrite results/
n_seeds = 1        # seeds per experiment when retraining
max_minutes = None  # retraining: stop each experiment after this long (resumable)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from reptile_lib import book, configs, data, paper

seeds = list(range(seed, seed + n_seeds))

# %% [markdown]
# ## What the paper reports (Mini-ImageNet)
#
# Accuracy in percent. The MAML rows are Finn et al.'s {cite:p}`finn2017maml`, quoted by the paper.

# %% tags=["nbval-check-output"]
book.paper_frame(paper.numbers("Table 1"))

# %% [markdown]
# ## Reference numbers on CIFAR-FS
#
# The paper has no CIFAR-FS number. For context, Bertinetto et al. report MAML and prototypical
# networks {cite:p}`snell2017prototypical` on CIFAR-FS; these values were recalled, not read from
# their paper, and are marked "(verify)". No Reptile number on 5-way CIFAR-FS is known to us.

# %% tags=["nbval-check-output"]
book.paper_frame(paper.numbers("CIFAR-FS reference"))

# %% [markdown]
# ## Our run
#
# Mini-ImageNet's hyper-parameters (15 training shots, inner batch 10, 8 inner steps, Adam 0.001,
# meta-batch 5, 100,000 meta-iterations; evaluation batch 5 for 1-shot and 15 for 5-shot) and its
# network (four 32-filter convolutions with max-pooling), on 32×32 inputs.

# %% tags=["nbval-check-output"]
config = configs.get_config("cifar_fs_5way")
book.table([{"config": config.name, "dataset": config.dataset, "model": config.model, "image_size": config.image_size,
             **{k: getattr(config, k) for k in ("train_shots", "inner_batch", "inner_iters", "learning_rate",
                                                "meta_batch", "meta_iters", "eval_samples")}}])

# %% tags=["nbval-check-output"]
have_loader = config.dataset in data.LOADERS
if have_loader:
    splits = book.load_splits(config.dataset)
    display(book.split_summary(splits))
else:
    display(Markdown(f"**The CIFAR-FS loader is not in the library yet** (`reptile_lib.data` knows "
                     f"{', '.join(sorted(data.LOADERS))}): nothing on CIFAR-FS has been trained or evaluated "
                     "for this page, and it shows no CIFAR-FS number of ours."))

# %%
if have_loader:
    book.plot_examples(splits["test"], title="CIFAR-FS test classes (first 8 classes, 3 images each)")
    plt.show()

# %%
# The smoke run is smaller than the other chapters': this network costs several times Omniglot's per image.
smoke = book.book_smoke(config, meta_iters=20, eval_samples=10)
doc = book.obtain(config, profile=profile, device=device, seeds=seeds, retrain=retrain, smoke=smoke,
                  max_minutes=max_minutes) if have_loader else None

# %% tags=["nbval-check-output"]
ours = book.paper_scale(doc)
if ours is None:
    display(Markdown("**No paper-scale CIFAR-FS run has been made yet** (`results/cifar_fs_5way.json` does "
                     "not exist or was made by another config)."))
else:
    display(book.metrics_frame(ours))

# %%
if ours is not None:
    display(Markdown(f"*Source: {book.provenance_line(ours)}.*"))
elif doc is not None:
    display(Markdown(f"**Smoke run** ({doc['config']['meta_iters']} meta-iterations, {book.n_tasks(doc)} test "
                     f"tasks per number): it shows that the pipeline runs on CIFAR-FS, not what Reptile "
                     f"achieves there. *{book.provenance_line(doc)}*"))
    display(book.metrics_frame(doc))
    for metric in doc["metrics"].values():
        assert 0.0 <= metric["mean"] <= 1.0
    if doc["extra"].get("history"):
        ax = book.plot_history(doc)
        ax.set_title("cifar_fs_5way: learning curve (smoke run)", fontsize=9)
        plt.show()
