"""The fast path: whole meta-iterations without host round trips, many runs batched, big evaluation batches.

Same semantics as the reference (``algorithms.meta_step`` batched, ``train.meta_train``,
``evaluate.evaluate``), laid out for a GPU whose meta-iteration is bound by kernel launches:

- :mod:`.flat`      all parameters of R runs x T tasks in one buffer: an Adam step is 9 kernels;
- :mod:`.nets`      gradients of every task at once (``vmap``, or the paper's networks written batched);
- :mod:`.sampling`  task sampling split into ``rand`` calls and a capturable deterministic rest;
- :mod:`.step`      the meta-step on flat buffers (Reptile, FOMAML, Figure 3 weights; per-run step sizes);
- :mod:`.runner`    static buffers + one CUDA graph per meta-iteration; NaN flag read every N iterations;
- :mod:`.trainer`   ``meta_train_runs`` / ``fast_meta_train``: ``meta_train``'s loop, checkpoints, curves;
- :mod:`.evaluate`  ``fast_evaluate``: the same tasks as ``evaluate``, thousands per batch on a GPU;
- :mod:`.sequential` the released Adam order (tasks one after another) fast on a CPU, and evaluation one
                    task at a time: what the CPU queue (``reproduce``) trains and evaluates with;
- :mod:`.serial`    the usual PyTorch port (one task at a time, ``torch.optim.Adam``): the baseline;
- :mod:`.counting`  ATen-operator and CUDA-kernel counts per meta-iteration.

``engine='graph'`` needs CUDA; elsewhere it runs the same code eagerly (``engine='eager'``).
"""
from __future__ import annotations

from .adapter import fused_meta_step
from .evaluate import default_eval_chunk, fast_evaluate
from .runner import ENGINES, MetaStepRunner, resolve_engine
from .trainer import RunSpec, check_batchable, fast_meta_train, meta_train_runs

__all__ = ["ENGINES", "MetaStepRunner", "RunSpec", "check_batchable", "default_eval_chunk", "fast_evaluate",
           "fast_meta_train", "fused_meta_step", "meta_train_runs", "resolve_engine"]
