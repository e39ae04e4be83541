"""Each claim of book/fidelity.md about reptile_lib, checked against the code on tiny problems."""
from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import pytest
import torch

from reptile_lib import algorithms, configs, inner, models, optim, tasks
from reptile_lib.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "book" / "fidelity.md").read_text()


def test_every_name_the_page_cites_exists():
    names = set(re.findall(r"`((?:optim|models|algorithms|tasks|evaluate|params|configs|inner|train|data\.omniglot)"
                           r"\.[A-Za-z_]\w*(?:\.\w+)?)(?=[`(])", PAGE)) - {f"{m}.py" for m in ("models", "train", "eval", "args")}
    assert len(names) >= 10
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            obj = importlib.import_module(f"reptile_lib.{module}")
        except ModuleNotFoundError:  # Class.method
            mod, _, cls = module.rpartition(".")
            obj = getattr(importlib.import_module(f"reptile_lib.{mod}"), cls)
        assert hasattr(obj, attr), f"book/fidelity.md cites `{name}`, which reptile_lib does not have"


def test_every_test_the_page_names_exists():
    cited = set(re.findall(r"`(test_\w+)::(test_\w+)`", PAGE))
    assert len(cited) >= 30
    for module, test in cited:
        path = ROOT / "tests" / f"{module}.py"
        assert path.exists(), f"book/fidelity.md names tests/{module}.py, which does not exist"
        assert re.search(rf"^def {test}\(", path.read_text(), re.M), f"book/fidelity.md names {module}::{test}, which is gone"


def test_every_table_row_cites_released_lines_and_a_verdict():
    rows = [r for r in PAGE.splitlines() if r.startswith("| ") and not r.startswith("| item") and "---" not in r]
    item_rows = [r for r in rows if r.count(" | ") == 4]  # the line-by-line tables: five columns
    assert len(item_rows) >= 40
    for r in item_rows:
        item, released, ours, verdict, test = (c.strip() for c in r.strip("|").split(" | "))
        assert re.search(r"\w+\.(py|md):\d|^—$|no released command|sine demo|TensorFlow 1|tf\.layers", released), r[:80]
        assert re.search(r"identical|named deviation|an addition", verdict), r[:80]


def test_monitoring_does_not_change_training(tiny_data):
    """The learning curves draw their tasks from their own generator: training is the same with or without them."""
    from reptile_lib.configs import Config, EvalSpec
    from reptile_lib.train import meta_train

    c = Config(name="tiny", dataset="tiny", model="omniglot", classes=2, train_shots=2, inner_batch=4, inner_iters=1,
               meta_batch=1, meta_iters=3, evals=(EvalSpec(1, 2, 1),), eval_samples=1, eval_interval=2,
               eval_interval_tasks=1)
    quiet = meta_train(c, tiny_data, seed=3)
    watched = meta_train(c, tiny_data, seed=3, monitor_splits={"train": tiny_data})
    assert len(watched.history) == 2 and not quiet.history  # iterations 1 and 2
    assert all(torch.equal(quiet.params[k], watched.params[k]) for k in quiet.params)


def test_inner_adam_is_tensorflows_with_beta1_zero():
    adam = optim.Adam(1e-3)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.0, 0.999, 1e-8)
    p = {"w": torch.tensor([1.0, -2.0])}
    g = {"w": torch.tensor([1e-7, 3e-8])}  # tiny gradients: where the two eps conventions differ
    state = adam.init(p)
    new, state = adam.step(p, g, state)
    v = (1 - 0.999) * g["w"] ** 2
    lr_t = 1e-3 * math.sqrt(1 - 0.999)
    tf = p["w"] - lr_t * g["w"] / (v.sqrt() + 1e-8)            # eps before the bias correction
    pytorch = p["w"] - 1e-3 * g["w"] / ((v / (1 - 0.999)).sqrt() + 1e-8)  # eps after it
    assert torch.allclose(new["w"], tf, rtol=0, atol=1e-9)
    assert not torch.allclose(new["w"], pytorch, rtol=0, atol=1e-9)
    assert float(state["step"]) == 1 and "m" not in state


def _task_batches(n_tasks=3, k=2, ways=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_tasks, 4 * k, 1, 8, 8, generator=g)
    y = torch.randint(0, ways, (n_tasks, 4 * k), generator=g)
    return [(x[:, 4 * i:4 * i + 4], y[:, 4 * i:4 * i + 4]) for i in range(k)]


def test_adam_state_carries_across_tasks_serially_and_is_averaged_when_batched():
    model = models.OmniglotNet(2, image_size=8)
    phi = models.init_params(model, torch.Generator().manual_seed(0))
    loss, adam = inner.classification_loss(model), optim.Adam(1e-3)
    batches, w = _task_batches(), algorithms.step_weights(2)
    serial = algorithms.meta_step(loss, phi, adam, adam.init(phi), batches, 1.0, w, batched=False,
                                  adam_carry="sequential")
    assert float(serial.state["step"]) == 3 * 2  # 3 tasks x 2 steps, one after another
    batched = algorithms.meta_step(loss, phi, adam, adam.init(phi), batches, 1.0, w, batched=True, adam_carry="mean")
    assert float(batched.state["step"]) == 2     # every task started from the shared state


def test_every_paper_config_adapts_in_the_released_order_by_default():
    from reptile_lib import sweeps
    runs = [*configs.PAPER_CONFIGS.values(), *sweeps.unique_configs(sweeps.figure4_points("paper")),
            configs.Config("mine", "omniglot", "omniglot")]
    assert all(not c.batched and c.adam_carry == "sequential" for c in runs)
    # Figure 3 keeps the batched fields it was trained (and its results hashed) with: plain SGD and one
    # task per meta-batch, so there is no Adam state to carry and no other task to batch with
    assert all(c.batched and c.adam_carry == "mean" and c.sgd and c.meta_batch == 1 for c in configs.FIGURE3_CURVES)


def test_evaluation_starts_every_task_from_the_trained_state():
    model = models.OmniglotNet(2, image_size=8)
    phi = models.init_params(model, torch.Generator().manual_seed(0))
    loss, adam = inner.classification_loss(model), optim.Adam(1e-3)
    state = adam.init(phi)
    state = {"step": torch.tensor(7.0), "v": {k: v + 0.01 for k, v in state["v"].items()}}
    before = {k: v.clone() for k, v in state["v"].items()}
    data = tasks.ClassDataset(torch.randint(0, 255, (4, 5, 1, 8, 8), dtype=torch.uint8), "toy",
                              tuple("abcd"), 255.0)
    sampler = tasks.TaskSampler(data, 2, torch.Generator().manual_seed(0))
    acc = evaluate(model, loss, phi, adam, state, sampler, shots=2, eval_batch=2, eval_iters=3, n_tasks=4, chunk=2)
    assert acc["transductive"].shape == (4,) and acc["nontransductive"].shape == (4,)
    assert float(state["step"]) == 7 and all(torch.equal(state["v"][k], before[k]) for k in before)


def test_batchnorm_uses_batch_statistics_with_tf_eps():
    norm = models.BatchStatNorm(3)
    assert norm.eps == 1e-3 and not list(norm.buffers())
    x = torch.randn(6, 3, 4, 4)
    expected = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-3)
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_tf_same_padding_is_asymmetric_for_stride_two():
    assert models.tf_same_padding(28, 3, 2) == (0, 1)
    assert models.tf_same_padding(7, 3, 2) == (1, 1)
    assert models.tf_same_padding(84, 3, 1) == (1, 1)


def test_glorot_uniform_kernels_and_zero_biases():
    model = models.OmniglotNet(5)
    params = models.init_params(model, torch.Generator().manual_seed(0))
    w = params["features.0.weight"]  # (64, 1, 3, 3)
    limit = math.sqrt(6 / (1 * 9 + 64 * 9))
    assert float(w.abs().max()) <= limit and float(w.abs().max()) > 0.9 * limit
    assert all(float(v.abs().max()) == 0 for k, v in params.items() if k.endswith("bias"))


def test_minibatches_carry_over_reshuffles():
    idx = tasks.minibatch_indices(50, 10, 6, 200, torch.Generator().manual_seed(0))
    first_pass = idx[:, :5].reshape(200, -1)
    assert all(len(set(row.tolist())) == 50 for row in first_pass)  # batches 1-5: one pass, no repeats


def test_paper_configs_evaluate_on_10000_tasks_with_one_query_per_class():
    assert all(c.eval_samples == 10_000 for c in configs.PAPER_CONFIGS.values())
    data = tasks.ClassDataset(torch.zeros(6, 7, 1, 2, 2, dtype=torch.uint8), "toy", tuple("abcdef"))
    t = tasks.TaskSampler(data, 5, torch.Generator().manual_seed(0)).eval_tasks(3, 5, 5, 2)
    assert t.query_x.shape[:2] == (3, 5) and t.support_x.shape[:2] == (3, 25)


def test_outer_step_anneals_linearly_to_zero():
    assert algorithms.meta_step_size(1.0, 0.0, 0, 100) == 1.0
    assert algorithms.meta_step_size(1.0, 0.0, 50, 100) == pytest.approx(0.5)
    assert (configs.OMNIGLOT_5WAY.meta_step, configs.OMNIGLOT_5WAY.meta_step_final) == (1.0, 0.0)


def test_one_trained_model_serves_both_shot_settings():
    c = configs.OMNIGLOT_5WAY
    assert c.train_shots == 10 and {e.shots for e in c.evals} == {1, 5}
    data = tasks.ClassDataset(torch.zeros(6, 12, 1, 2, 2, dtype=torch.uint8), "toy", tuple("abcdef"))
    batches = tasks.TaskSampler(data, 5, torch.Generator().manual_seed(0)).train_batches(2, 10, 10, 5)
    assert len(batches) == 5 and batches[0][0].shape[:2] == (2, 10)  # 5 batches of 10 from 5 x 10 train shots
