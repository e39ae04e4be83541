"""The benchmark script runs end to end (tiny shapes) and writes the JSON the book renders; the GPU job is ready."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_rehearsed_on_the_cpu_writes_every_figure(tmp_path):
    """``benchmarks/gpu_check.sh`` end to end with tiny shapes: the script, the bench and its JSON."""
    env = {**os.environ, "RESULTS_DIR": str(tmp_path), "PYTHON": sys.executable, "TEST_ARGS": "-k batch_layout",
           "BENCH_ARGS": "--device cpu --smoke --configs omniglot_5way --repeats 2 --iters 1 --runs 2 --eval-tasks 3"}
    job = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-cuda.json", "bench.log", "env.txt", "tests.log"]
    assert "1 passed" in (tmp_path / "tests.log").read_text()
    doc = json.loads((tmp_path / "bench-cuda.json").read_text())
    assert {"device", "torch", "commit", "date", "settings", "configs", "eval", "threads"} <= set(doc)
    paths = doc["configs"]["omniglot_5way"]["paths"]
    assert set(paths) == {"serial", "reference_batched", "reference_sequential", "engine_sequential",
                          "engine_sequential_torch", "engine_eager", "runs2"}
    from reptile_lib.engine import native
    assert paths["engine_sequential"]["kernels"] == ("native" if native.available() else "torch")
    assert paths["engine_sequential_torch"]["kernels"] == "torch"
    for name, p in paths.items():
        assert p["ms_per_iter"] > 0 and len(p["repeats_ms"]) == 2, name
        assert p["aten_ops_per_iter"] > 0
    assert paths["runs2"]["runs"] == 2 and paths["runs2"]["ms_per_run"] > 0
    # what a GPU pays for: the engine launches far fewer operations than the reference and serial loops
    assert paths["engine_eager"]["aten_ops_per_iter"] < paths["reference_batched"]["aten_ops_per_iter"]
    assert paths["reference_batched"]["aten_ops_per_iter"] < paths["serial"]["aten_ops_per_iter"]
    agree = doc["configs"]["omniglot_5way"]["agreement"]
    assert agree["max_abs"] < 1e-6 and agree["finite"]
    assert doc["eval"]["tasks_timed"] == 3 and doc["eval"]["engine_s"] > 0 and doc["eval"]["extrapolated"]
    assert doc["eval"]["same_per_task_accuracy_fraction"] == 1.0
    assert doc["eval"]["sequential_s"] > 0 and doc["eval"]["same_per_task_accuracy_fraction_sequential"] == 1.0
    seq = doc["configs"]["omniglot_5way"]["agreement_sequential"]
    assert seq["max_abs"] < 1e-10, seq    # float64
    assert seq["float32_error_engine"] < 10 * seq["float32_error_reference"] + 1e-6, seq
    assert "ms/iter" in (tmp_path / "bench.log").read_text()
    assert doc["settings"]["other_processes_cores"] >= 0 and doc["settings"]["stolen_cores"] >= 0
    assert doc["settings"]["matmul_gflops"] > 0 and doc["configs"]["omniglot_5way"]["gflop_per_iter"] > 0


def test_documented_gpu_command_is_the_script():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    command = re.search(r"```\n(REPTILE_COMMIT=.*?)\n```", readme, re.S).group(1)
    assert "benchmarks/gpu_check.sh" in command


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")))
def test_committed_results_carry_provenance(name):
    doc = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
    assert {"device", "torch", "commit", "date", "configs"} <= set(doc)
    for entry in doc["configs"].values():
        for p in entry["paths"].values():
            assert "ms_per_iter" in p or "error" in p


def test_run_cost_rows_turn_a_benchmark_into_hours_per_paper_scale_run():
    from reptile_lib.book import run_cost_rows

    doc = {"configs": {"omniglot_5way": {"paths": {"engine_sequential": {"ms_per_iter": 36.0}}},
                       "cifar_fs_5way": {"paths": {"engine_sequential": {"ms_per_iter": 72.0}}}},
           "eval": {"config": "omniglot_5way", "ways": 5, "shots": 1, "sequential_s_per_10000": 1800.0}}
    rows = {r["config"]: r for r in run_cost_rows(doc)}
    # 100,000 iterations x 36 ms = 1 h; 2 eval settings x 12,000 tasks x 0.18 s = 1.2 h
    assert rows["omniglot_5way"]["training hours"] == 1.0 and rows["omniglot_5way"]["evaluation hours"] == 1.2
    assert rows["omniglot_5way"]["total hours"] == 2.2
    assert rows["cifar_fs_5way"]["training hours"] == 2.0 and rows["cifar_fs_5way"]["evaluation hours"] is None
    # CIFAR-FS timed on its 5-shot setting; the plan evaluates 10,000 test tasks per setting
    doc["eval_cifar_fs_5shot"] = {"config": "cifar_fs_5way", "ways": 5, "shots": 5, "sequential_s_per_10000": 3600.0}
    cifar = {r["config"]: r for r in run_cost_rows(doc)}["cifar_fs_5way"]
    assert cifar["evaluation tasks per setting"] == 10_000 and cifar["evaluation hours"] == 2.0
    assert cifar["evaluation timed on"] == "5-way 5-shot"


def test_other_load_is_the_machines_busy_time_less_the_benchmarks_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench

    # 10 s: the machine busy 15 CPU-seconds (1 s stolen), the benchmark itself 12 of them
    load = bench.other_load(((100.0, 5.0), 40.0, 1000.0), ((115.0, 6.0), 52.0, 1010.0))
    assert load == {"other_processes_cores": 0.3, "stolen_cores": 0.1}
    # the benchmark's own threads never count as other processes (the load average counted them)
    assert bench.other_load(((0.0, 0.0), 0.0, 0.0), ((20.0, 0.0), 20.0, 10.0))["other_processes_cores"] == 0.0
    assert bench.other_load((None, 0.0, 0.0), ((1.0, 0.0), 1.0, 1.0)) is None
    busy, stolen = bench.cpu_seconds()      # this machine's counters, read for real
    assert busy > 0 and stolen >= 0


def test_flops_per_iteration_is_the_hand_count_of_the_omniglot_network():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench

    from reptile_lib.book import benchmark_rows
    from reptile_lib.configs import OMNIGLOT_5WAY

    # forward multiply-adds per 28 x 28 image: 3x3 convolutions 1->64 on 14x14 outputs, then 64->64 on
    # 7x7, 4x4, 2x2, and the 256 -> 5 classifier; backward twice that, less the first layer's input gradient
    macs = 14 * 14 * 64 * 9 + (7 * 7 + 4 * 4 + 2 * 2) * 64 * 64 * 9 + 256 * 5
    per_image = 2 * (3 * macs - 14 * 14 * 64 * 9)
    assert bench.flops_per_iteration(OMNIGLOT_5WAY, (1, 28, 28)) == per_image * 10 * 5 * 5   # batch, steps, tasks
    doc = {"configs": {"omniglot_5way": {"gflop_per_iter": 3.93, "paths": {"serial": {"ms_per_iter": 393.0}}}}}
    assert benchmark_rows(doc)[0]["GFLOP/s"] == "10.0"
    assert "GFLOP/s" not in benchmark_rows({"configs": {"x": {"paths": {"serial": {"ms_per_iter": 1.0}}}}})[0]
