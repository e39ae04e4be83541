"""The book pipeline: the paper's numbers, verdicts, notebook rules, executed notebooks in sync, config."""
from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reptile_lib import book, configs, paper, report
from reptile_lib.results import metric_name, provenance, write_results

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
EXECUTED = ROOT / "book" / "executed"


# ---------------------------------------------------------------- reptile_lib.paper
def test_paper_tables_have_every_printed_number():
    assert len(paper.TABLE1) == 8 and len(paper.TABLE2) == 16 and len(paper.CIFAR_FS_REFERENCE) == 4
    t2 = {(n.algorithm, n.shots, n.ways): n.text() for n in paper.TABLE2}
    assert t2[("Reptile", 1, 5)] == "95.39 ± 0.09"
    assert t2[("Reptile + transduction", 5, 20)] == "97.12 ± 0.32"
    assert t2[("MAML + transduction", 5, 5)] == "99.9 ± 0.1"
    t1 = {(n.algorithm, n.shots): n.text() for n in paper.TABLE1}
    assert t1[("Reptile + transduction", 5)] == "65.99 ± 0.58"
    cifar = {(n.algorithm, n.shots): n.text() for n in paper.CIFAR_FS_REFERENCE}
    assert cifar[("MAML", 1)] == "58.9 ± 1.9" and cifar[("prototypical networks", 5)] == "72.0 ± 0.6"
    assert not any(n.verify for n in paper.ALL_NUMBERS), "every printed number is read from a source"


def test_paper_rows_point_at_our_configs_and_metrics():
    compared = [n for n in paper.ALL_NUMBERS if n.config]
    assert {n.config for n in compared} == {"omniglot_5way", "omniglot_20way"}
    assert all(n.algorithm.startswith("Reptile") and n.table == "Table 2" for n in compared)
    for n in compared:
        assert n.ways == configs.get_config(n.config).classes
        assert n.metric == metric_name("test", n.shots, n.ways, n.transductive)
        assert n.shots in {e.shots for e in configs.get_config(n.config).evals}
    assert all(n.not_compared for n in paper.ALL_NUMBERS if not n.config)


@pytest.mark.parametrize("run", sorted(paper.HYPERPARAMETERS))
def test_configs_match_the_papers_hyperparameters(run):
    """configs.py (the library) against paper.py (transcribed from the paper's appendix) field by field."""
    h, c = paper.HYPERPARAMETERS[run], configs.get_config(run)
    for key, value in h.items():
        if key == "eval_batch":
            assert {e.shots: e.eval_batch for e in c.evals} == value
        elif key == "eval_iters":
            assert all(e.eval_iters == value for e in c.evals)
        else:
            assert getattr(c, key) == value, key
    assert c.eval_samples == paper.EVAL_TASKS


# ---------------------------------------------------------------- verdicts and tables
def _fake_results(folder: Path, config, profile: str, acc: float, finished: bool = True) -> Path:
    metrics = {metric_name("test", e.shots, config.classes, t): {"mean": acc, "ci95": 0.002, "n_tasks": 10_000}
               for e in config.evals for t in (True, False)}
    prov = provenance("cpu", [0], 125.0, finished)
    path = folder / (f"{config.name}.json" if profile == "paper" else f"smoke/{config.name}.json")
    return write_results(path, config.name, profile, config, metrics, prov)


def test_load_if_matching_and_comparison(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "results_dir", lambda: tmp_path)
    config = configs.OMNIGLOT_5WAY
    assert book.load_if_matching("omniglot_5way", config) is None
    _fake_results(tmp_path, config, "paper", 0.9541)
    doc = book.load_if_matching("omniglot_5way", config)
    assert doc is not None and doc["profile"] == "paper"
    other = configs.OMNIGLOT_20WAY
    assert book.load_if_matching("omniglot_5way", other) is None  # made by another config: refused
    rows = report.comparison_rows(paper.TABLE2, {"omniglot_5way": doc, "omniglot_20way": None})
    by = {(r["algorithm"], r["setting"]): r for r in rows}
    assert by[("Reptile", "1-shot 5-way")]["ours"].startswith("95.41 ± 0.20")
    assert by[("Reptile", "1-shot 5-way")]["verdict"].startswith("within")
    assert by[("Reptile + transduction", "1-shot 5-way")]["verdict"].startswith("below by 2.27")
    assert by[("Reptile", "1-shot 20-way")]["verdict"] == report.PENDING
    assert by[("MAML + transduction", "1-shot 5-way")]["verdict"].startswith("not re-run")
    assert len(rows) == len(paper.TABLE2)


def test_provenance_line_and_metrics_frame(tmp_path):
    config = configs.OMNIGLOT_5WAY
    doc = json.loads(_fake_results(tmp_path, config, "smoke", 0.5, finished=False).read_text())
    line = book.provenance_line(doc)
    assert line.startswith("smoke run") and "2.1 min" in line and "NOT FINISHED" in line and ", seed 0 " in line
    # a run the queue trained over many stops: how many commits, hours
    doc["provenance"].update(commits=["a" * 40, "b" * 40 + "+dirty", "c" * 40], wall_time_s=3 * 3600)
    line = book.provenance_line(doc)
    assert "3 commits (each segment's" in line and "3.0 h" in line and "aaaaaaa" not in line
    doc["provenance"].update(commits=["d" * 40 + "+dirty"])
    assert "commit ddddddd with uncommitted changes" in book.provenance_line(doc)
    frame = book.metrics_frame(doc)
    assert list(frame.columns) == ["nontransductive", "transductive"]
    assert list(frame.index) == ["1-shot 5-way", "5-shot 5-way"]
    assert frame.loc["5-shot 5-way", "transductive"] == "50.00 ± 0.20"
    assert book.paper_scale(doc) is None and book.n_tasks(doc) == 10_000


def test_last_batch_overlap_against_counting():
    # 5 classes x 10 shots = 50 samples dealt in batches of 10: one pass is 5 batches.
    assert book.last_batch_overlap(5) == 0.0
    assert book.last_batch_overlap(6) == 1.0
    assert book.last_batch_overlap(8, tail_shots=5) == 0.0  # a separate tail is never seen before
    # Batches of 12, 5 steps: the last batch holds 2 unseen samples of the first pass and 10 of the
    # second, each already seen with probability 48/50: expected overlap (10 * 48/50) / 12 = 0.8.
    assert book.last_batch_overlap(5, inner_batch=12, n_tasks=2000) == pytest.approx(0.8, abs=0.02)


def test_obtain_trains_on_reptile_trains_default_path(monkeypatch):
    from reptile_lib import experiment
    engines = []
    monkeypatch.setattr(book, "load_splits", lambda name: {})
    monkeypatch.setattr(experiment, "run_experiment",
                        lambda config, profile, seeds, **kw: engines.append(kw["engine"]) or {"metrics": {}})
    doc = book.obtain(configs.OMNIGLOT_5WAY, profile="smoke")
    assert engines == ["auto"] and doc["config"]["meta_iters"] < configs.OMNIGLOT_5WAY.meta_iters


def test_obtain_rejects_unknown_profile():
    with pytest.raises(ValueError, match="profile"):
        book.obtain(configs.OMNIGLOT_5WAY, profile="fast")


# ---------------------------------------------------------------- notebook rules
def _cells(source: Path):
    import jupytext

    return jupytext.read(source).cells


PARAMETERS = {"profile": "paper", "device": "cpu", "seed": 0, "retrain": False, "n_seeds": 1}
FORBIDDEN_IN_LOOPS = {"meta_step", "step", "backward", "zero_grad", "train_batches", "eval_tasks", "meta_train"}


def test_the_notebook_contract_files_exist():
    names = {p.stem for p in SOURCES}
    assert {"01_sine", "02_taylor", "03_geometry", "04_omniglot", "05_cifar_fs", "06_figure3", "07_figure4",
            "08_report", "09_performance"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_has_a_parameters_cell(source):
    code = [c for c in _cells(source) if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), "the parameters cell only assigns values"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    for name in ("profile", "device", "seed", "retrain"):
        assert values.get(name) == PARAMETERS[name], f"parameter {name} must default to {PARAMETERS[name]!r}"
    assert code.index(tagged[0]) == 0, "the parameters cell is the first code cell"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_narrates_and_calls_the_library(source):
    for cell in _cells(source):
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("%", "!")), f"IPython magic or shell escape: {line}"
        assert not re.search(r"pip install|conda install|urlretrieve|urlopen|requests\.get|wget |curl |download\s*=\s*True",
                             cell.source), "no installs or downloads in notebooks"
        tree = ast.parse(cell.source)
        for loop in (n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))):
            for call in (n for n in ast.walk(loop) if isinstance(n, ast.Call)):
                name = getattr(call.func, "attr", getattr(call.func, "id", None))
                assert name not in FORBIDDEN_IN_LOOPS, \
                    f"a loop calling {name}(): training loops and samplers belong in reptile_lib"


# ---------------------------------------------------------------- executed notebooks
def _executed(source: Path) -> dict:
    path = EXECUTED / f"{source.stem}.ipynb"
    assert path.exists(), f"{path} missing: run `make book` and commit book/executed/"
    return json.loads(path.read_text())


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_executed_notebook_is_in_sync_with_its_source(source):
    """book/executed/NN.ipynb was executed from the current notebooks/NN.py (else: run `make book`)."""
    nb = _executed(source)
    executed = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).strip()
                for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    expected = [c.source.strip() for c in _cells(source)]
    assert executed == expected, f"{source.name} changed since book/executed/ was made: run `make book`"
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert nb["metadata"]["papermill"]["parameters"]["profile"] in ("paper", "smoke")
    assert "start_time" not in nb["metadata"]["papermill"], "run metadata is stripped (tools/build_book.py)"


@pytest.mark.parametrize("source", [s for s in SOURCES if s.stem[:2] >= "04"], ids=lambda p: p.stem)
def test_experiment_notebooks_check_their_tables_strictly(source):
    tagged = [c for c in _cells(source) if "nbval-check-output" in c.metadata.get("tags", [])]
    assert tagged, "tables and verdicts computed from results are checked by nbval (tag nbval-check-output)"


# ---------------------------------------------------------------- the book's configuration
def _toc_files() -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.toc_files(ROOT)


def test_toc_pages_exist_and_every_page_is_in_the_toc():
    files = _toc_files()
    for f in files:
        assert any((ROOT / f"{f}{s}").exists() for s in (".md", ".ipynb")), f
    pages = {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").rglob("*")
             if p.suffix in (".md", ".ipynb") and not {"_ext", "_generated"} & set(p.parts)
             and not p.name.startswith(".")}
    assert pages == set(files)
    assert {f"book/executed/{s.stem}" for s in SOURCES} <= set(files)


def test_config_is_offline_strict_and_launchable():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "off"
    mathjax = cfg["sphinx"]["config"]["mathjax_path"]
    assert mathjax == "mathjax/tex-mml-chtml.js" and "//" not in mathjax
    assert cfg["sphinx"]["config"]["nb_ipywidgets_js"] == {}
    # Launch buttons only where they work: without a published repository URL there is no
    # repository, Binder or Colab button (they would point nowhere); downloads work offline.
    html = cfg.get("html", {})
    repo = cfg.get("repository", {}).get("url")
    if not repo:
        assert not html.get("use_repository_button") and not html.get("use_issues_button")
        assert not any(cfg.get("launch_buttons", {}).get(k) for k in ("binderhub_url", "colab_url"))
    assert html.get("use_download_button", True)
    for bib in cfg["bibtex_bibfiles"]:
        assert (ROOT / bib).exists()


def test_mathjax_ships_with_the_pinned_package():
    import importlib.util

    spec = importlib.util.spec_from_file_location("offline_site", ROOT / "book" / "_ext" / "offline_site.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    es5 = mod.mathjax_source()
    assert (es5 / "tex-mml-chtml.js").stat().st_size > 100_000
    assert list((es5 / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_executed_notebooks_are_not_git_ignored():
    probe = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "book/executed/04_omniglot.ipynb"])
    assert probe.returncode == 1, "book/executed/ must be committed, not git-ignored"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_code_shown_on_the_page_fits_the_column(source):
    """Code a reader can see (not tagged remove-input / remove-cell) fits the text column unclipped."""
    for cell in _cells(source):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or tags & {"remove-input", "remove-cell", "parameters"}:
            continue
        long = [line for line in cell.source.splitlines() if len(line) > 78]
        assert not long, f"code lines wider than the column (78 characters): {long}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_executed_chapter_opens_with_its_claim_box_and_hides_the_parameters(source):
    """The page starts with the claim box (before any section), ends with what to take away, and
    neither the parameters nor papermill's injected values are on it."""
    nb = _executed(source)
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            assert "remove-cell" in tags, "tools/build_book.py takes the parameters off the page"
    first_box = first_section = None
    for i, cell in enumerate(nb["cells"]):
        text = "".join(cell["source"]) if cell["cell_type"] == "markdown" else "".join(
            "".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", []))
        if first_box is None and ":::{admonition} The paper's claim" in text:
            first_box = i
        if first_section is None and cell["cell_type"] == "markdown" and "\n## " in "\n" + text:
            first_section = i
    assert first_box is not None and (first_section is None or first_box < first_section)
    last_md = [c for c in nb["cells"] if c["cell_type"] == "markdown"][-1]
    assert "## What to take away" in "".join(last_md["source"])


def test_unit_names_can_wrap_in_a_table_cell():
    from reptile_lib import book

    assert book.breakable("figure3_avg_g1+g2+g3+g4-seed0") == "figure3_<wbr>avg_<wbr>g1+<wbr>g2+<wbr>g3+<wbr>g4<wbr>-seed0"
    assert book.breakable("omniglot_5way-seed1").replace("<wbr>", "") == "omniglot_5way-seed1"


def test_two_builds_at_once_keep_each_others_notebooks(monkeypatch, tmp_path):
    """The queue re-executes a chapter when a run finishes, perhaps while another build runs: each build
    stages its notebooks apart, and leaves no staging folder behind."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book_under_test", ROOT / "tools" / "build_book.py")
    bb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bb)
    monkeypatch.setattr(bb, "ROOT", tmp_path)
    monkeypatch.setattr(bb, "EXECUTED", tmp_path / "executed")

    def fake_execute(source, parameters, out_dir):
        if source.stem == "b":   # another build starts and finishes while this one is half done
            bb.execute_all([tmp_path / "other.py"], {})
        (out_dir / f"{source.stem}.ipynb").write_text("{}")

    monkeypatch.setattr(bb, "execute", fake_execute)
    bb.execute_all([tmp_path / "a.py", tmp_path / "b.py"], {})
    assert sorted(p.name for p in (tmp_path / "executed").iterdir()) == ["a.ipynb", "b.ipynb", "other.ipynb"]
    assert list((tmp_path / "_build").iterdir()) == []


def test_the_performance_page_times_every_path_that_runs_here():
    """Chapter 9's live timing: batched, the reference loop and, on a CPU, the default fast path."""
    import dataclasses

    from data_fixtures import real_folder

    real_folder("omniglot", ("images_background.npz",))
    config = dataclasses.replace(configs.OMNIGLOT_5WAY, meta_batch=2, inner_iters=2)
    rows = book.time_meta_iterations(config, iters=1)
    assert [r["path"] for r in rows] == ["batched (vmap), adam_carry='mean'",
                                         "reference loop, released order (--engine reference)",
                                         "fast path, released order (the default here)"]
    assert all(r["ms per meta-iteration"] > 0 and r["timed iterations"] == 1 for r in rows)
