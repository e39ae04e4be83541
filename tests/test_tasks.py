"""Task sampling follows the released code: classes, shots, mini-batches with carry-over, queries."""
import pytest
import torch

from reptile_lib.tasks import TaskSampler, minibatch_indices


def test_minibatches_are_reshuffles_dealt_with_carry_over():
    g = torch.Generator().manual_seed(0)
    idx = minibatch_indices(n=15, batch=10, num_batches=8, n_tasks=3, generator=g)  # 80 = 5 reshuffles + 5
    assert idx.shape == (3, 8, 10)
    stream = idx.reshape(3, -1)
    for t in range(3):
        for e in range(5):  # each consecutive block of 15 is one reshuffle: a permutation
            assert sorted(stream[t, 15 * e:15 * (e + 1)].tolist()) == list(range(15))
    assert not torch.equal(stream[0, :15], stream[0, 15:30])  # reshuffled, not repeated


def test_minibatches_with_replacement_are_fresh_draws_of_distinct_samples():
    g = torch.Generator().manual_seed(0)
    idx = minibatch_indices(10, 4, 6, 2, g, replacement=True)
    for b in idx.reshape(-1, 4):
        assert len(set(b.tolist())) == 4
    with pytest.raises(ValueError, match="distinct"):
        minibatch_indices(3, 4, 1, 1, g, replacement=True)


def test_training_tasks_use_train_shots_and_label_classes_in_order(tiny_data):
    s = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(0))
    batches = s.train_batches(n_tasks=2, train_shots=4, inner_batch=6, inner_iters=2)  # 12 samples = 1 epoch
    assert len(batches) == 2 and batches[0][0].shape == (2, 6, 1, 28, 28)
    for t in range(2):
        ys = torch.cat([y[t] for _, y in batches])
        assert sorted(ys.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
        xs = torch.cat([x[t] for x, _ in batches]).flatten(1)
        assert len({tuple(r.tolist()) for r in xs}) == 12  # 12 distinct images in one epoch
        # each image keeps its label: all images labelled j come from one class, a different class per label
        stored = (tiny_data.images.flatten(2).to(xs.dtype) / tiny_data.scale)   # (classes, per_class, pixels)
        source = [int((stored == r).all(-1).any(-1).nonzero()[0]) for r in xs]
        by_label = {j: {c for c, y in zip(source, ys.tolist()) if y == j} for j in range(3)}
        assert all(len(c) == 1 for c in by_label.values()) and len(set.union(*by_label.values())) == 3


def test_separate_tail_reserves_shots_for_the_last_batch(tiny_data):
    s = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(1))
    batches = s.train_batches(1, train_shots=5, inner_batch=4, inner_iters=3, tail_shots=2)
    assert [x.shape[1] for x, _ in batches] == [4, 4, 6]  # tail = 3 classes x 2 shots
    tail = {tuple(r.tolist()) for r in batches[-1][0][0].flatten(1)}
    rest = {tuple(r.tolist()) for x, _ in batches[:-1] for r in x[0].flatten(1)}
    assert not tail & rest
    with pytest.raises(ValueError, match="foml_tail"):
        s.train_batches(1, 5, 4, 3, tail_shots=5)


def test_eval_tasks_hold_one_query_per_class_outside_the_support(tiny_data):
    s = TaskSampler(tiny_data, 4, torch.Generator().manual_seed(2))
    tasks = s.eval_tasks(n_tasks=3, shots=2, eval_batch=5, eval_iters=7)
    assert tasks.support_x.shape == (3, 8, 1, 28, 28) and tasks.query_x.shape == (3, 4, 1, 28, 28)
    assert tasks.query_y.tolist() == [[0, 1, 2, 3]] * 3
    batches = tasks.batches()
    assert len(batches) == 7 and batches[0][0].shape == (3, 5, 1, 28, 28)
    for t in range(3):
        support = {tuple(r.tolist()) for r in tasks.support_x[t].flatten(1)}
        assert not support & {tuple(r.tolist()) for r in tasks.query_x[t].flatten(1)}


def test_bad_task_shapes_fail_clearly(tiny_data):
    with pytest.raises(ValueError, match="13-way tasks need 13 classes, this split has 12"):
        TaskSampler(tiny_data, 13, torch.Generator())
    s = TaskSampler(tiny_data, 5, torch.Generator())
    with pytest.raises(ValueError, match=r"shots \+ 1 = 9 images per class, but each class has 8"):
        s.eval_tasks(1, 8, 5, 5)
    with pytest.raises(ValueError, match="train_shots = 9"):
        s.train_batches(1, 9, 5, 5)


def test_same_generator_seed_same_tasks(tiny_data):
    a = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(5)).eval_tasks(2, 1, 3, 4)
    b = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(5)).eval_tasks(2, 1, 3, 4)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.batch_index, b.batch_index)
