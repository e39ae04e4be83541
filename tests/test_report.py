"""Verdicts and tables against the paper, on hand-made results documents."""
import math
import re
from dataclasses import dataclass

import pytest

from reptile_lib import report
from reptile_lib.results import metric_name, summarize


@dataclass(frozen=True)
class Num:
    """A stand-in for ``paper.PaperNumber`` (same fields the report reads)."""

    algorithm: str
    ways: int
    shots: int
    transductive: bool
    mean: float
    pm: float
    config: str | None = "omniglot_5way"
    digits: int = 2
    not_compared: str = ""

    @property
    def metric(self):
        return metric_name("test", self.shots, self.ways, self.transductive)

    @property
    def setting(self):
        return f"{self.shots}-shot {self.ways}-way"

    def text(self):
        return f"{self.mean:.{self.digits}f} ± {self.pm:.{self.digits}f}"


def tasks(acc: float, n: int, spread: int = 5) -> list[float]:
    """n per-task accuracies with mean ``acc`` (k of 5 queries right, a few above and below)."""
    lo, hi = acc - 0.2, acc + 0.2
    vals = [lo if i % 2 else hi for i in range(n)]
    return [v + (acc - sum(vals) / n) for v in vals]


def doc(metrics: dict, profile="paper", finished=True, iterations=None, meta_iters=100_000, pending=None) -> dict:
    return {"experiment": "omniglot_5way", "profile": profile, "config": {"meta_iters": meta_iters},
            "provenance": {"seeds": [0, 1, 2], "finished": finished, "device": "x", "commit": "abc", "wall_time_s": 1},
            "metrics": metrics, "extra": {"iterations": iterations or {}, "pending_seeds": pending or {}}}


def metric(per_seed_means, n=1000):
    return summarize({s: tasks(m, n) for s, m in enumerate(per_seed_means)})


ONE = Num("Reptile", 5, 1, False, 95.39, 0.09)


def test_combined_uncertainty_is_the_documented_formula():
    m = metric([0.951, 0.955, 0.960])
    ours = report.Ours.of(m)
    sd = math.sqrt(sum((100 * x - ours.mean) ** 2 for x in (0.951, 0.955, 0.960)) / 2)
    assert ours.seed_sd == pytest.approx(sd)
    u = math.sqrt(0.09 ** 2 + (100 * m["ci95"]) ** 2 + (1.96 * sd / math.sqrt(3)) ** 2)
    assert report.combined_uncertainty(0.09, ours) == pytest.approx(u)
    single = report.Ours.of(metric([0.95]))
    assert single.seed_sd is None and single.ci_seeds == 0.0
    assert report.combined_uncertainty(0.09, single) == pytest.approx(math.hypot(0.09, single.ci_tasks))


def test_a_hit_is_within_and_a_miss_says_by_how_much():
    hit = report.verdict(ONE, doc({ONE.metric: metric([0.953, 0.955, 0.956])}))
    assert hit.status == "within" and hit.compared and hit.text.startswith("within: ")
    assert abs(hit.diff) <= hit.combined
    miss = report.verdict(ONE, doc({ONE.metric: metric([0.930, 0.931, 0.932], n=10_000)}))
    assert miss.status == "below" and miss.diff == pytest.approx(93.1 - 95.39, abs=1e-6)
    assert miss.text == f"below by {abs(miss.diff):.2f} ({abs(miss.diff) - miss.combined:.2f} beyond ±{miss.combined:.2f})"
    above = report.verdict(ONE, doc({ONE.metric: metric([0.99, 0.99, 0.99], n=10_000)}))
    assert above.status == "above" and above.text.startswith("above by 3.61")


def test_seed_spread_can_turn_a_miss_into_a_hit():
    """Three seeds far apart: the interval over tasks alone would call a miss, the seed term does not."""
    spread = metric([0.940, 0.960, 0.980], n=10_000)
    v = report.verdict(ONE, doc({ONE.metric: spread}))
    only_tasks = math.hypot(0.09, 100 * spread["ci95"])
    assert abs(v.diff) > only_tasks and v.status == "within"


def test_what_cannot_be_compared_says_why():
    m = {ONE.metric: metric([0.95])}
    assert report.verdict(ONE, None).text == "not produced yet (no finished paper-scale run)"
    assert report.verdict(ONE, doc(m, profile="smoke")).text == "smoke run — not comparable"
    unfinished = report.verdict(ONE, doc(m, finished=False, iterations={"0": 45_000}))
    assert unfinished.status == "unfinished" and not unfinished.compared
    assert unfinished.text == "unfinished run (seed 0: 45,000 of 100,000 meta-iterations) — not comparable"
    assert report.verdict(ONE, doc({})).text == "metric missing from results"
    context = Num("MAML + transduction", 5, 1, True, 98.7, 0.4, config=None, not_compared="not re-run: quoted")
    assert report.verdict(context, doc(m)).status == "context"


def test_cell_rows_hide_smoke_numbers_unless_asked():
    m = {ONE.metric: metric([0.5])}
    row = report.cell_row(ONE, doc(m, profile="smoke"))
    assert row["ours"] == "(smoke run)" and row["verdict"] == "smoke run — not comparable" and row["difference"] == "—"
    shown = report.cell_row(ONE, doc(m, profile="smoke"), show_smoke=True)
    assert shown["ours"].startswith("50.00 ± ")
    paper_row = report.cell_row(ONE, doc({ONE.metric: metric([0.951, 0.955, 0.96])}))
    assert paper_row["paper"] == "95.39 ± 0.09" and paper_row["seeds"].startswith("3 (sd ")
    assert list(paper_row) == ["algorithm", "setting", "paper", "ours", "seeds", "difference", "combined ±", "verdict"]


def test_tables_print_the_same_text_every_time():
    numbers = [ONE, Num("Reptile", 5, 5, False, 98.90, 0.10), Num("Reptile", 20, 1, False, 88.14, 0.15, "omniglot_20way")]
    docs = {"omniglot_5way": doc({ONE.metric: metric([0.953, 0.955, 0.956])}), "omniglot_20way": None}
    text = report.text(report.frame(report.comparison_rows(numbers, docs)))
    assert text == report.text(report.frame(report.comparison_rows(numbers, docs)))
    assert "metric missing from results" in text and "not produced yet (no finished paper-scale run)" in text
    assert report.verdict_summary(numbers, docs) == ("3 cells: 1 within, 1 metric missing from results, "
                                                    "1 not produced yet (no finished paper-scale run)")


def test_status_line_labels_unfinished_and_pending_seeds():
    assert report.status_line("omniglot_5way", None).startswith("omniglot_5way: not produced yet")
    d = doc({}, finished=False, iterations={"0": 45_000})
    assert "UNFINISHED" in report.status_line("omniglot_5way", d) and "45,000 of 100,000" in report.status_line("x", d)
    part = doc({ONE.metric: metric([0.95])}, pending={"1": 20_000, "2": 0})
    assert report.status_line("x", part) == ("x: paper-scale run, finished, seeds 0, 1, 2; seeds still training: "
                                             "1 (at 20,000), 2 (at 0).")
    assert "smoke run" in report.status_line("x", doc({}, profile="smoke"))


def test_gap_rows_subtract_test_from_train():
    d = doc({metric_name("train", 1, 5, False): metric([0.99]), metric_name("test", 1, 5, False): metric([0.95])})
    rows = report.gap_rows(d, 5)
    assert len(rows) == 1 and rows[0]["gap (train - test)"] == "+4.00"
    assert report.gap_rows(doc(d["metrics"], profile="smoke"), 5)[0]["gap (train - test)"] == "—"


def test_hyperparameter_rows_flag_a_difference():
    from reptile_lib.configs import OMNIGLOT_5WAY

    paper = dict(inner_iters=5, learning_rate=0.001, meta_iters=100_000, eval_batch={1: 5, 5: 5}, eval_iters=50)
    rows = {r["field"]: r for r in report.hyperparameter_rows(OMNIGLOT_5WAY, paper)}
    assert all(r["same"] == "yes" for r in rows.values())
    rows = {r["field"]: r for r in report.hyperparameter_rows(OMNIGLOT_5WAY, {**paper, "inner_iters": 8})}
    assert rows["inner_iters"]["same"] == "NO" and rows["meta_iters"]["paper"] == "100,000"


def test_network_rows_measure_the_smaller_input():
    rows = report.network_rows("miniimagenet", (84, 32), 3)
    assert rows[0]["feature maps"] == "84 -> 42 -> 21 -> 11 -> 6" and rows[0]["features"] == 1152
    assert rows[1]["feature maps"] == "32 -> 16 -> 8 -> 4 -> 2" and rows[1]["features"] == 128


# ---------------------------------------------------------------- figures
def _curve(levels):
    return [{"iteration": 1000 * (i + 1), "test_nontransductive": a, "test_nontransductive_ci95": 0.02}
            for i, a in enumerate(levels)]


def figure3_doc(g1=0.3, k_levels=(0.80, 0.85, 0.90), g2=0.81, profile="paper", finished=True, first=None):
    labels = ["g1", "g2", "g3", "g4", "g1+g2", "g1+g2+g3", "g1+g2+g3+g4", "(g1+g2)/2", "(g1+g2+g3)/3", "(g1+g2+g3+g4)/4"]
    level = {"g1": g1, "g2": g2, "g3": 0.84, "g4": 0.85, "g1+g2": k_levels[0], "g1+g2+g3": k_levels[1],
             "g1+g2+g3+g4": k_levels[2], "(g1+g2)/2": 0.7, "(g1+g2+g3)/3": 0.75, "(g1+g2+g3+g4)/4": 0.8}
    runs = [{"name": f"figure3[{a}]", "classes": 5, "evals": [{"shots": 5, "eval_batch": 25, "eval_iters": 5}]}
            for a in labels]
    metrics = {f"figure3[{a}]|test_5shot_5way_nontransductive": {"mean": level[a], "ci95": 0.005, "n_tasks": 10_000}
               for a in labels}
    return {"profile": profile, "config": {"runs": runs}, "metrics": metrics,
            "provenance": {"finished": finished, "seeds": [0]},
            "extra": {"monitor": {"split": "test"}, "iterations": {},
                      "points": [{"panel": "x", "value": 1, "algorithm": a, "config": f"figure3[{a}]"} for a in labels],
                      "curves": {f"figure3[{a}]": _curve([(first or {}).get(a, level[a] - 0.1), level[a]])
                                 for a in labels}}}


def test_figure3_findings_hold_and_fail_with_the_numbers():
    rows = report.figure3_findings(figure3_doc())
    assert [r["holds"] for r in rows[:3]] == ["holds", "holds", "holds"]
    assert rows[0]["ours"].startswith("g1 30.0 ± 0.5% (chance 20%; 20.0% at its first curve point)")
    falls = report.figure3_findings(figure3_doc(g1=0.3, first={"g1": 0.6}))[0]["ours"]
    assert "60.0% at its first curve point, so it falls rather than learns" in falls
    # g2 against g1+g2: which learns faster (curve means) and which ends higher (final evaluation)
    assert rows[3]["holds"] == "g2 learns faster (curve mean, 1.0 points, within ±2.0); g2 ends higher"
    assert report.figure3_findings(figure3_doc(g2=0.75))[3]["holds"] == \
        "g1+g2 learns faster (curve mean, 5.0 points); g1+g2 ends higher"
    assert [r["paper_claim"] for r in rows] == [True, True, True, False, False]   # the paper expects the first three
    assert rows[4]["holds"] == "sum ahead for k = 2, 3, 4"   # sums 80/85/90 against averages 70/75/80
    tie = report.figure3_findings(figure3_doc(k_levels=(0.80, 0.75, 0.90)))[4]   # k = 3: 75.0 against 75.0
    assert tie["holds"] == "sum ahead for k = 2, 4; tie for k = 3"
    assert rows[4]["ours"].endswith("k = 4: 85.0 vs 75.0")       # curve means: the two points' average
    mixed = report.figure3_findings(figure3_doc(k_levels=(0.6, 0.74, 0.9)))[4]["holds"]
    assert mixed == "sum ahead for k = 4; average ahead for k = 2, 3 (within noise for k = 3)"
    bad = report.figure3_findings(figure3_doc(g1=0.8, k_levels=(0.9, 0.85, 0.8)))
    assert bad[0]["holds"] == "does not hold" and bad[1]["holds"] == "does not hold"
    assert {r["holds"] for r in report.figure3_findings(figure3_doc(profile="smoke"))} == {"smoke run — not comparable"}
    assert {r["holds"] for r in report.figure3_findings(figure3_doc(finished=False))} == {"unfinished run — not evaluated"}


def test_figure4_findings_split_by_the_overlap_regime():
    runs, points, metrics = [], [], {}
    acc = {("fomaml-shared", 2): 0.95, ("fomaml-shared", 8): 0.80, ("reptile", 2): 0.95, ("reptile", 8): 0.955,
           ("fomaml-separate", 2): 0.94, ("fomaml-separate", 8): 0.99}
    for (alg, k), a in acc.items():
        name = f"f[{alg};{k}]"
        runs.append({"name": name, "classes": 5, "train_shots": 10, "inner_batch": 10, "inner_iters": k,
                     "evals": [{"shots": 5, "eval_batch": 5, "eval_iters": 50}]})
        points.append({"panel": "inner_iters", "value": k, "algorithm": alg, "config": name})
        metrics[f"{name}|test_5shot_5way_nontransductive"] = {"mean": a, "ci95": 0.005, "n_tasks": 3000}
    d = {"profile": "paper", "config": {"runs": runs}, "metrics": metrics, "provenance": {"finished": True},
         "extra": {"points": points}}
    rows = {r["algorithm"]: r for r in report.figure4_findings(d) if r["panel"] == "inner_iters"}
    assert rows["fomaml-shared"]["verdict"] == "degrades" and rows["fomaml-shared"]["change"].startswith("-15.00")
    assert rows["reptile"]["verdict"] == "stable" and rows["fomaml-separate"]["verdict"] == "improves"
    assert {r["verdict"] for r in report.figure4_findings(d) if r["panel"] == "inner_batch"} == {report.MISSING}
    assert {r["verdict"] for r in report.figure4_findings(None)} == {report.PENDING}


# ---------------------------------------------------------------- with the paper's numbers (reptile_lib.paper)
def test_table2_and_cifar_rows_use_the_papers_numbers():
    paper = pytest.importorskip("reptile_lib.paper")
    rows = report.table2_rows({"omniglot_5way": None, "omniglot_20way": None})
    assert len(rows) == 8 and {r["verdict"] for r in rows} == {report.PENDING}
    assert rows[0]["paper"] == paper.TABLE2[8].text()
    cifar = report.cifar_fs_rows(None)
    assert [r["data set"] for r in cifar][-2:] == ["Mini-ImageNet", "Mini-ImageNet"]
    assert all("no verdict" in r["note"] for r in cifar[-2:])
    assert cifar[0]["1-shot 5-way"] == report.PENDING
    # each published anchor names its source, the table it was read from, and its network
    anchors = {r["algorithm"]: r for r in cifar if r["data set"] == "CIFAR-FS" and "(ours)" not in r["algorithm"]}
    assert anchors["MAML"]["1-shot 5-way"] == "58.9 ± 1.9" and "32-32-32-32" in anchors["MAML"]["note"]
    assert "64-64-64-64" in anchors["prototypical networks"]["note"]
    assert all("Lee et al. 2019 (MetaOptNet), Table 2" in r["note"] for r in anchors.values())


def test_the_cifar_fs_table_gives_mean_interval_seed_count_and_spread_over_seeds():
    """Three seeds: mean over seeds, 95% interval over all tasks, 'N seeds, sd S' (the spread of the seed means)."""
    from reptile_lib.results import metric_name

    means = {(1, False): [0.52, 0.53, 0.54], (5, False): [0.70, 0.70, 0.70],
             (1, True): [0.57, 0.57, 0.57], (5, True): [0.74, 0.75, 0.76]}
    d = doc({metric_name("test", s, 5, t): metric(m) for (s, t), m in means.items()})
    ours = {r["algorithm"]: r for r in report.cifar_fs_rows(d)}
    one = ours["Reptile (ours)"]["1-shot 5-way"]
    assert one.startswith("53.00 ± ") and one.endswith(" (3 seeds, sd 1.00)")
    assert ours["Reptile (ours)"]["5-shot 5-way"].endswith(" (3 seeds, sd 0.00)")
    assert ours["Reptile + transduction (ours)"]["5-shot 5-way"].startswith("75.00 ± ")
    single = doc({metric_name("test", 1, 5, False): metric([0.52])})
    assert report.cifar_fs_rows(single)[0]["1-shot 5-way"].endswith(" (1 seed)")


def test_cifar_fs_takeaways_are_computed_from_the_results_and_give_no_verdict():
    """The CIFAR-FS chapter's summary: our four numbers, the transduction gain here and in the paper's
    Mini-ImageNet rows (49.97 - 47.07 and 65.99 - 62.74), the references beside ours; which seeds are missing."""
    pytest.importorskip("reptile_lib.paper")
    values = {(1, False): 0.5, (1, True): 0.55, (5, False): 0.7, (5, True): 0.75}
    doc = {"metrics": {f"test_{s}shot_5way_{'transductive' if t else 'nontransductive'}": {"mean": v}
                       for (s, t), v in values.items()},
           "provenance": {"finished": True, "seeds": [0], "seeds_planned": [0, 1, 2]}}
    text = "\n".join(report.cifar_fs_takeaways(doc))
    assert "seed 0; seeds 1, 2 still in the queue" in text and "mean over seeds" not in text
    assert "50.00% 1-shot and 70.00% 5-shot, 55.00% and 75.00% with transduction" in text
    assert "adds 5.00 points in 1-shot and 5.00 in 5-shot here" in text and "it adds 2.90 and 3.25" in text
    assert "1-shot, ours 50.00 (55.00 with transduction) against MAML 58.9 and prototypical networks 55.5" in text
    assert "no verdict" in text and "verdict:" not in text.lower()
    doc["provenance"]["seeds"] = [0, 1, 2]
    assert "(seeds 0, 1, 2): " in "\n".join(report.cifar_fs_takeaways(doc))
    assert "mean over seeds" in "\n".join(report.cifar_fs_takeaways(doc))
    unfinished = report.cifar_fs_takeaways({**doc, "provenance": {"finished": False, "seeds": [0]}})
    assert len(unfinished) == 2 and "not finished" in unfinished[1]


def test_the_carry_summary_reads_the_paired_differences_and_the_released_seeds():
    """Mean carry against the released order: the test rows' range, how many intervals exclude zero, where the
    mean-carry numbers fall among the released order's seeds, and the paper's ± for the same cells."""
    pytest.importorskip("reptile_lib.paper")
    assert report.metric_words("test_5shot_20way_nontransductive") == "test, 5-shot 20-way, non-transductive"

    def row(metric, b, points, ci, split="test"):
        return {"metric": metric, "split": split, "seed": 0, "b": f"{b:.2f}", "points": points, "ci_points": ci}

    rows = [row("test_1shot_5way_nontransductive", 95.0, -0.4, 0.16), row("test_5shot_5way_transductive", 99.5, -0.05, 0.06),
            row("train_1shot_5way_nontransductive", 90.0, +3.0, 0.1, split="train")]
    released = {"metrics": {"test_1shot_5way_nontransductive": {"per_seed": [{"mean": 0.954}, {"mean": 0.953}]},
                            "test_5shot_5way_transductive": {"per_seed": [{"mean": 0.995}, {"mean": 0.996}]}}}
    text = report.carry_summary(rows, released)
    assert text.startswith("On the 2 test evaluations the mean carry scores 0.05 to 0.40 points lower than the "
                           "released order (1 of 2 intervals exclude zero)")
    assert "1 of the 2 mean-carry numbers lie below the lowest of the released order's 2 seeds" in text
    assert "The paper's ± for these cells is 0.06 to 0.09" in text and text.endswith("(one mean-carry run, seed 0).")
    assert "seeds" not in report.carry_summary(rows).split(".")[1]      # without the released results file
    assert report.carry_summary(rows[2:]) is None                        # no test rows: nothing to say


# ---------------------------------------------------------------- the scoreboard
def _write_omniglot(folder, finished=True, seeds=(0,), config=None):
    from reptile_lib import reproduce
    from reptile_lib.results import provenance, write_results

    config = config or reproduce.experiment_config("omniglot_5way")
    means = {(1, False): 0.953, (5, False): 0.989, (1, True): 0.9, (5, True): 0.995}
    metrics = {metric_name("test", s, 5, t): summarize({seed: tasks(m, 1000) for seed in seeds})
               for (s, t), m in means.items()}
    prov = provenance("cpu", list(seeds), 1.0, finished, seeds_planned=[0, 1, 2])
    return write_results(folder / "omniglot_5way.json", "omniglot_5way", "paper", config, metrics, prov,
                         {"iterations": {str(s): 100_000 for s in seeds}})


QUEUE = [{"unit": "omniglot_5way-seed0", "state": "training: 12,000 of 100,000"},
         {"unit": "omniglot_5way-seed1", "state": "pending"}, {"unit": "omniglot_5way-seed2", "state": "pending"},
         {"unit": "omniglot_5way_mean_carry-seed0", "state": "pending"}]


def _omniglot_rows(rows):
    return {r["Claim"]: r for r in rows if r["Claim"].startswith("Table 2") and "5-way" in r["Claim"]}


def test_scoreboard_has_one_row_per_claim_and_says_what_is_not_run(tmp_path):
    rows = report.scoreboard_rows(tmp_path, QUEUE)
    claims = [r["Claim"] for r in rows]
    assert len(claims) == len(set(claims)) == 22
    assert all(tuple(r) == report.SCOREBOARD_COLUMNS for r in rows)
    five = _omniglot_rows(rows)
    assert len(five) == 4
    for r in five.values():
        assert r["Scale"] == "unfinished (queue: seed 0 training: 12,000 of 100,000; seeds 1, 2 pending)"
        assert (r["Ours"], r["Verdict"]) == ("—", "not finished yet")
    twenty = [r for r in rows if "20-way" in r["Claim"]]
    assert {r["Scale"] for r in twenty} == {"not run"}
    # Table 1 on CIFAR-FS never gets a verdict, and says so before its run is in
    table1 = [r for r in rows if r["Claim"].startswith("Table 1")]
    assert table1 and all(r["Verdict"].endswith("; no verdict (another data set)") for r in table1)
    assert all(report.verdict_class(r["Verdict"]) == "pending" for r in table1)
    # nothing in an empty results folder is reproduced
    assert "0 reproduced" in report.scoreboard_summary(rows)


def test_scoreboard_rows_change_when_a_results_file_appears(tmp_path):
    before = _omniglot_rows(report.scoreboard_rows(tmp_path, QUEUE))
    _write_omniglot(tmp_path)
    after = _omniglot_rows(report.scoreboard_rows(tmp_path, [dict(q, state="done") if q["unit"].endswith("seed0")
                                                              else q for q in QUEUE]))
    assert before != after
    one_shot = after["Table 2 (Omniglot): Reptile, 1-shot 5-way"]
    assert one_shot["Scale"] == "paper, 1 of 3 seeds (queue: seeds 1, 2 pending)"
    assert one_shot["Ours"].startswith("95.30 ± ")
    assert one_shot["Verdict"].startswith("within")
    trans = after["Table 2 (Omniglot): Reptile + transduction, 1-shot 5-way"]
    assert trans["Verdict"].startswith("below by")
    assert one_shot["Device"] != "—"


def test_scoreboard_ignores_a_results_file_of_another_config(tmp_path):
    import dataclasses

    from reptile_lib import reproduce

    _write_omniglot(tmp_path, config=dataclasses.replace(reproduce.experiment_config("omniglot_5way"), meta_iters=7))
    rows = _omniglot_rows(report.scoreboard_rows(tmp_path, []))
    assert {r["Scale"] for r in rows.values()} == {"not run"}


def test_scoreboard_markdown_links_chapters_and_has_no_gaps(tmp_path):
    rows = report.scoreboard_rows(tmp_path, QUEUE)
    md = report.scoreboard_markdown(rows, "executed/")
    lines = md.strip().splitlines()
    assert lines[0] == "| Claim | Paper | Ours | Scale, device | Verdict |"
    chapters = list(dict.fromkeys(r["Chapter"] for r in rows))
    assert len(chapters) == 7 and len(lines) == 2 + len(chapters) + 22   # a heading row per chapter, a row per claim
    assert all(line.count("|") == len(report.SCOREBOARD_DISPLAY) + 1 for line in lines)
    assert "| **{doc}`Table 2: few-shot Omniglot <executed/04_omniglot>`** | | | | |" in lines
    heading = lines.index("| **{doc}`Table 2: few-shot Omniglot <executed/04_omniglot>`** | | | | |")
    assert lines[heading + 1].startswith("| Reptile, 1-shot 5-way | 95.39 ± 0.09 | — | unfinished | not finished yet |")
    # where the queue stands is said once, under the table, not in every cell
    assert "(queue:" not in md
    # a queued run that makes no claim's number (the mean carry) is listed too, under the chapter that shows it
    assert report.queue_markdown(QUEUE).splitlines()[2:] == [
        "- Table 2, `omniglot_5way`: seed 0 training: 12,000 of 100,000; seeds 1, 2 pending",
        "- Table 2, `omniglot_5way_mean_carry`: seed 0 pending"]
    assert report.queue_markdown([]) == ""
    assert report.queue_markdown(QUEUE, as_of="2026-01-03 08:20 UTC").startswith(
        "Still in the queue of paper-scale runs, as of 2026-01-03 08:20 UTC (")
    assert not re.search(r"\bnan\b|\bNone\b", md)
    with pytest.raises(ValueError, match="no scoreboard rows"):
        report.scoreboard_markdown([])


def test_scoreboard_markdown_puts_the_device_beside_the_scale():
    row = {"Claim": "Section 5: following AvgGradInner helps", "Paper": "derived", "Ours": "x", "Scale": "paper",
           "Device": "cpu (1 thread, x86_64)", "Verdict": "holds", "Chapter": "02_taylor"}
    md = report.scoreboard_markdown([row, dict(row, Claim="Section 5 (b): a | b", Device="cpu (2 threads, x86_64)")])
    assert "| Following AvgGradInner helps | derived | x | paper; cpu (1 thread, x86_64) | holds |" in md
    assert "| A \\| b | derived | x | paper; cpu (2 threads, x86_64) | holds |" in md   # pipes escaped
    # one device for every measured claim of a chapter: said once, in the chapter's heading row
    md = report.scoreboard_markdown([row, dict(row, Claim="Section 5 (b): a | b", Device="—")])
    assert "| ran on cpu (1 thread, x86_64) | |" in md.splitlines()[2]
    assert "| Following AvgGradInner helps | derived | x | paper | holds |" in md
    assert "| A \\| b | derived | x | paper | holds |" in md


def test_run_state_and_claim_box_follow_the_queue_and_the_results(tmp_path):
    assert report.run_state("omniglot_5way", None, QUEUE) == \
        "not finished yet (queue: seed 0 training: 12,000 of 100,000; seeds 1, 2 pending)"
    assert report.run_state("omniglot_20way", None, QUEUE).startswith("not started (not in the queue")
    assert report.run_state("omniglot_5way", None, [dict(r, state="pending") for r in QUEUE]) == \
        "not started yet (queue: seeds 0, 1, 2 pending)"
    box = report.claim_box("04_omniglot", report.scoreboard_rows(tmp_path, QUEUE))
    assert box.startswith(":::{admonition}") and box.rstrip().endswith(":::")
    assert "Verdict: not finished yet" in box and "95.39 ± 0.09" in box
    # where the run stands, said once and without nested parentheses
    assert "Ours: none yet; in the queue, seed 0 training: 12,000 of 100,000; seeds 1, 2 pending. **Verdict" in box
    _write_omniglot(tmp_path)
    box = report.claim_box("04_omniglot", report.scoreboard_rows(tmp_path, QUEUE))
    assert "Verdict: within" in box
    assert "as of" not in box   # no date given: none made up
    dated = report.claim_box("04_omniglot", report.scoreboard_rows(tmp_path, QUEUE), as_of="2026-01-03 08:20 UTC")
    assert "\n\nThe queue's progress is as of 2026-01-03 08:20 UTC.\n" in dated
    # the four measured cells share their scale and machine: said once, not in each bullet
    assert box.count(" CPU, ") == 1 and "\n\nOur numbers: paper scale" in box
    from reptile_lib.results import load_results

    done = load_results(tmp_path / "omniglot_5way.json")
    assert report.run_state("omniglot_5way", done, QUEUE[1:]) == "finished (1 of 3 seeds; queue: seeds 1, 2 pending)"
    with pytest.raises(ValueError, match="no scoreboard row"):
        report.claim_box("99_nothing", [])


def test_html_tables_print_numbers_as_a_reader_wants_them():
    html = report.html_table([{"ms": 621.6, "hours": 3.9, "s per task": 0.19716, "tasks": 12000.0, "n": 7, "x": None},
                              {"ms": 621.6, "hours": 3.9, "s per task": 0.19716, "tasks": 12000.0, "n": 7, "x": None}]).data
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells == ["621.6", "3.9", "0.1972", "12,000", "7", "—"]   # one row: duplicates dropped, no NaN


def test_device_lists_are_shortened_for_tables_one_model_with_its_thread_counts():
    two = "cpu (1 thread, x86_64, Intel(R) Xeon(R) Processor); cpu (2 threads, x86_64, Intel(R) Xeon(R) Processor)"
    assert report.short_device(two) == "Intel Xeon CPU, 1 or 2 threads"
    moved = "cpu (1 thread, x86_64, AMD EPYC); cpu (1 thread, x86_64, Intel(R) Xeon(R) Processor)"
    assert report.short_device(moved) == "AMD EPYC CPU, 1 thread; Intel Xeon CPU, 1 thread"
    assert report.short_device("cpu (1 threads, x86_64)") == "CPU, 1 thread"          # no model, older wording
    assert report.short_device("NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3"    # not a CPU: as it is


def test_table2_takeaways_count_the_cells_within_and_name_the_others(tmp_path):
    from reptile_lib.results import load_results

    assert report.table2_takeaways({}) == [
        "Not produced yet, 8 cells: 1-shot 5-way (Reptile, Reptile + transduction); 5-shot 5-way (Reptile, "
        "Reptile + transduction); 1-shot 20-way (Reptile, Reptile + transduction); 5-shot 20-way (Reptile, "
        "Reptile + transduction)."]
    doc = load_results(_write_omniglot(tmp_path))   # transductive 1-shot at 90%: far below the paper's 97.68
    out = report.table2_takeaways({"omniglot_5way": doc, "omniglot_20way": None})
    assert out[0] == "**3 of the 4 cells we have run are within the paper's uncertainty** (omniglot_5way: 1 of 3 seeds)."
    assert out[1].startswith("Reptile + transduction, 1-shot 5-way: below by ") and "paper 97.68 ± 0.04" in out[1]
    assert out[2].startswith("Not produced yet, 4 cells: 1-shot 20-way") and len(out) == 3


def test_a_number_on_another_data_set_is_counted_without_a_verdict_not_as_a_miss():
    """Table 1's CIFAR-FS cells say 'none (...)': measured, no verdict; only a 'no' as a word is a miss."""
    assert report.verdict_class("none (measured on CIFAR-FS, another data set)") == "context"
    assert report.verdict_class("no: the curves cross") == "missed"
    assert report.verdict_class("below by 2.39 (2.1 beyond ±0.3)") == "missed"
    rows = [{"Claim": f"Table 1 (Mini-ImageNet): Reptile, {c}", "Paper": "47.07 ± 0.26", "Ours": "52.54 ± 0.42 on CIFAR-FS",
             "Verdict": "none (measured on CIFAR-FS, another data set)", "Chapter": "05_cifar_fs"} for c in "ab"]
    summary = report.scoreboard_summary(rows)
    assert "0 not reproduced" in summary and "2 measured without a verdict" in summary
    assert report.report_takeaways(rows)[0].startswith("**0 of the 2 claims reproduce, 0 are missed**")


def test_the_reports_summary_counts_the_scoreboard_and_names_what_is_missed():
    rows = [{"Claim": "Table 2 (Omniglot): Reptile, 1-shot 5-way", "Paper": "95.39 ± 0.09", "Ours": "93.00 ± 0.20",
             "Verdict": "below by 2.39 (2.1 beyond ±0.3)", "Chapter": "04_omniglot"},
            {"Claim": "Table 2 (Omniglot): Reptile, 5-shot 5-way", "Paper": "98.90 ± 0.10", "Ours": "98.95 ± 0.05",
             "Verdict": "within: +0.05 of ±0.14", "Chapter": "04_omniglot"},
            {"Claim": "Figure 4 (sensitivity): Reptile is insensitive", "Paper": "curves, no numbers", "Ours": "—",
             "Verdict": "not run yet", "Chapter": "07_figure4"}]
    out = report.report_takeaways(rows)
    assert out[0] == "**1 of the 3 claims reproduce, 1 is missed**; 1 waits for runs of the queue."
    assert out[1] == "Reproduced, by chapter: Table 2 (1 of 2)."
    assert out[2].startswith("Missed: Table 2 (Omniglot): Reptile, 1-shot 5-way: below by 2.39")
    assert out[3].startswith("Waiting for the queue (claims per chapter): Figure 4 (1);")
