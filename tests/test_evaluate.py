"""Evaluation protocols: non-transductive queries are independent; Adam's state is restored per task."""
import torch

from blobs import blobs
from torch.func import functional_call

from reptile_lib.evaluate import Accuracy, evaluate, evaluate_tasks, predict
from reptile_lib.algorithms import task_slice
from reptile_lib.inner import classification_loss, inner_loop
from reptile_lib.models import OmniglotNet, init_params
from reptile_lib.optim import Adam
from reptile_lib.tasks import TaskSampler


def _model():
    model = OmniglotNet(4)
    return model, init_params(model, torch.Generator().manual_seed(0))


def test_non_transductive_prediction_of_a_query_ignores_the_other_queries():
    model, phi = _model()
    g = torch.Generator().manual_seed(1)
    support, queries = torch.rand(8, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    changed = queries.clone()
    changed[1:] = torch.rand(3, 1, 28, 28, generator=g) * 5  # only query 0 is kept
    logits = lambda q, trans: predict(model, phi, support, q, trans)
    assert logits(queries, False)[0] == logits(changed, False)[0]
    # The same through the full output: compare the raw outputs of query 0.
    a = functional_call(model, phi, (torch.cat([support, queries[:1]]),))[-1]
    b = functional_call(model, phi, (torch.cat([support, changed[:1]]),))[-1]
    assert torch.equal(a, b)
    # Transductively, BatchNorm statistics mix the queries: query 0's output changes.
    ta = functional_call(model, phi, (queries,))[0]
    tb = functional_call(model, phi, (changed,))[0]
    assert not torch.allclose(ta, tb)


def test_predictions_are_the_networks_outputs_under_each_protocol(float64):
    """Transductive: the queries form one batch; non-transductive: each query with the support set, its own
    (last) output kept. Checked against the network's outputs, on inputs where the two protocols disagree."""
    model, phi = _model()
    g = torch.Generator().manual_seed(2)
    phi = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in phi.items()}   # not an untrained constant
    support, queries = torch.rand(8, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g) * 3
    trans, nontrans = predict(model, phi, support, queries, True), predict(model, phi, support, queries, False)
    assert torch.equal(trans, functional_call(model, phi, (queries,)).argmax(-1))
    one_by_one = [functional_call(model, phi, (torch.cat([support, q[None]]),))[-1].argmax() for q in queries]
    assert torch.equal(nontrans, torch.stack(one_by_one))
    assert not torch.equal(trans, nontrans)


def test_evaluation_adapts_every_task_from_the_trained_state(float64):
    """Released ``Reptile.evaluate``: each task starts from the trained weights and Adam state (restored after
    it), not from a fresh Adam state nor from the previous task's: a plain per-task loop is the reference."""
    model, phi = _model()
    loss, opt = classification_loss(model), Adam(1e-3)
    state = {"step": torch.tensor(100.0),
             "v": {k: 1e-4 * (1 + torch.rand(v.shape, generator=torch.Generator().manual_seed(4))) for k, v in phi.items()}}
    tasks = TaskSampler(blobs(8, 6, 0.4, 11, "noisy"), 4, torch.Generator().manual_seed(3)).eval_tasks(6, 1, 4, 10)

    def loop(start, carry):
        out, st = {"transductive": [], "nontransductive": []}, start
        for t in range(6):
            adapted = inner_loop(loss, phi, opt, st, task_slice(tasks.batches(), t))
            st = adapted.state if carry else st
            for proto, trans in (("transductive", True), ("nontransductive", False)):
                hits = predict(model, adapted.params, tasks.support_x[t], tasks.query_x[t], trans) == tasks.query_y[t]
                out[proto].append(hits.float().mean())
        return {k: torch.stack(v) for k, v in out.items()}

    got = evaluate_tasks(model, loss, phi, opt, state, tasks)
    for proto, ref in loop(state, carry=False).items():
        assert torch.equal(got[proto], ref.to(got[proto].dtype)), proto
    fresh, carried = loop(opt.init(phi), carry=False), loop(state, carry=True)
    assert any(not torch.equal(got[p], fresh[p].to(got[p].dtype)) for p in got)     # the state matters here,
    assert any(not torch.equal(got[p], carried[p].to(got[p].dtype)) for p in got)   # so a wrong start would show


def test_evaluation_restores_adam_state_and_is_repeatable(tiny_data):
    model, phi = _model()
    opt = Adam(1e-3)
    state = {"step": torch.tensor(100.0), "v": {k: torch.full_like(v, 1e-4) for k, v in phi.items()}}
    before = {k: v.clone() for k, v in state["v"].items()}
    tasks = TaskSampler(tiny_data, 4, torch.Generator().manual_seed(3)).eval_tasks(5, 1, 4, 10)
    a = evaluate_tasks(model, classification_loss(model), phi, opt, state, tasks)
    b = evaluate_tasks(model, classification_loss(model), phi, opt, state, tasks)
    assert torch.equal(a["transductive"], b["transductive"]) and torch.equal(a["nontransductive"], b["nontransductive"])
    assert float(state["step"]) == 100 and all(torch.equal(before[k], state["v"][k]) for k in before)


def test_batched_evaluation_equals_one_task_at_a_time(tiny_data):
    model, phi = _model()
    opt, loss = Adam(1e-3), classification_loss(model)
    state = opt.init(phi)
    tasks = TaskSampler(tiny_data, 4, torch.Generator().manual_seed(4)).eval_tasks(3, 2, 4, 6)
    together = evaluate_tasks(model, loss, phi, opt, state, tasks)
    for t in range(3):
        one = type(tasks)(tasks.support_x[t:t + 1], tasks.support_y[t:t + 1], tasks.query_x[t:t + 1],
                          tasks.query_y[t:t + 1], tasks.batch_index[t:t + 1])
        alone = evaluate_tasks(model, loss, phi, opt, state, one)
        assert alone["nontransductive"][0] == together["nontransductive"][t]
        assert alone["transductive"][0] == together["transductive"][t]


def test_accuracy_interval():
    acc = Accuracy.of(torch.tensor([0.0, 1.0] * 50))
    assert acc.mean == 0.5 and acc.n_tasks == 100
    assert abs(acc.ci95 - 1.96 * (0.25 * 100 / 99) ** 0.5 / 10) < 1e-9


def test_evaluate_chunks_cover_all_tasks(tiny_data):
    model, phi = _model()
    opt = Adam(1e-3)
    loss, state = classification_loss(model), opt.init(phi)
    out = evaluate(model, loss, phi, opt, state, TaskSampler(tiny_data, 4, torch.Generator().manual_seed(0)),
                   1, 4, 3, n_tasks=7, chunk=3)
    # the same stream of tasks drawn in chunks of 3, 3 and 1, each scored once
    sampler = TaskSampler(tiny_data, 4, torch.Generator().manual_seed(0))
    chunks = [evaluate_tasks(model, loss, phi, opt, state, sampler.eval_tasks(n, 1, 4, 3)) for n in (3, 3, 1)]
    for proto in ("transductive", "nontransductive"):
        assert torch.equal(out[proto], torch.cat([c[proto] for c in chunks])), proto
