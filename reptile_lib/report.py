"""Our numbers next to the paper's (Tables 1 and 2): verdicts and the tables the chapters print.

The verdict of one cell (Section 7's accuracies, in percentage points)::

    difference  d = ours - paper
    ours' uncertainty  u = sqrt(ci_tasks^2 + ci_seeds^2)
        ci_tasks = 1.96 sd / sqrt(N): the 95% interval over all N
                   evaluation tasks of all seeds
        ci_seeds = 1.96 sd_seeds / sqrt(S): the 95% interval of the mean
                   over S >= 2 seeds (run-to-run variation, which the
                   interval over tasks does not see); 0 for one seed
    combined uncertainty  U = sqrt(paper_pm^2 + u^2)
    verdict: "within" when |d| <= U, else "above" / "below" by |d|,
             i.e. |d| - U beyond U.

The paper's ``±`` is taken at face value as its own uncertainty (for the Reptile rows it is most
likely a spread over runs, see ``paper.PM_NOTE``), and the two are added in quadrature as
independent errors. The seed term counts the task noise of each seed's mean a second time, so
U errs on the wide side; with three seeds a t interval would be wider still (normal 1.96 here).
Only a finished paper-scale run gets a verdict: a smoke run, an unfinished run, a missing metric
or an absent results file each say so instead.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

Z95 = 1.96

PENDING = "not produced yet (no finished paper-scale run)"
SMOKE = "smoke run — not comparable"
MISSING = "metric missing from results"


@dataclass(frozen=True)
class Ours:
    """One metric of a results file, in percent: pooled mean, 95% interval over tasks, seeds."""

    mean: float
    ci_tasks: float
    per_seed: tuple[float, ...]
    n_tasks: int

    @staticmethod
    def of(metric: Mapping[str, Any]) -> "Ours":
        seeds = tuple(100 * float(s["mean"]) for s in metric.get("per_seed", ()))
        return Ours(100 * float(metric["mean"]), 100 * float(metric["ci95"]), seeds, int(metric["n_tasks"]))

    @property
    def n_seeds(self) -> int:
        return max(1, len(self.per_seed))

    @property
    def seed_sd(self) -> float | None:
        """Standard deviation of the per-seed means (None with fewer than two seeds)."""
        if len(self.per_seed) < 2:
            return None
        mu = sum(self.per_seed) / len(self.per_seed)
        return math.sqrt(sum((x - mu) ** 2 for x in self.per_seed) / (len(self.per_seed) - 1))

    @property
    def ci_seeds(self) -> float:
        sd = self.seed_sd
        return 0.0 if sd is None else Z95 * sd / math.sqrt(len(self.per_seed))

    @property
    def uncertainty(self) -> float:
        return math.hypot(self.ci_tasks, self.ci_seeds)

    def text(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} ± {self.ci_tasks:.{digits}f}"

    def seeds_text(self, digits: int = 2) -> str:
        sd = self.seed_sd
        return f"{self.n_seeds}" if sd is None else f"{self.n_seeds} (sd {sd:.{digits}f})"


@dataclass(frozen=True)
class Verdict:
    """How one of our numbers compares with the paper's (see the module docstring)."""

    status: str                 # within | above | below | pending | smoke | unfinished | missing | context
    text: str
    diff: float | None = None       # ours - paper, points
    combined: float | None = None   # U, points

    @property
    def compared(self) -> bool:
        return self.status in ("within", "above", "below")


def combined_uncertainty(paper_pm: float, ours: Ours) -> float:
    """U = sqrt(paper_pm^2 + ci_tasks^2 + ci_seeds^2), in points."""
    return math.sqrt(paper_pm ** 2 + ours.ci_tasks ** 2 + ours.ci_seeds ** 2)


def compare(paper_mean: float, paper_pm: float, ours: Ours, digits: int = 2) -> Verdict:
    """The verdict of a finished paper-scale number against the paper's ``mean ± pm`` (percent)."""
    d = ours.mean - paper_mean
    u = combined_uncertainty(paper_pm, ours)
    if abs(d) <= u:
        return Verdict("within", f"within: {d:+.{digits}f} of ±{u:.{digits}f}", d, u)
    side = "above" if d > 0 else "below"
    return Verdict(side, f"{side} by {abs(d):.{digits}f} ({abs(d) - u:.{digits}f} beyond ±{u:.{digits}f})", d, u)


def run_status(doc: Mapping[str, Any] | None) -> Verdict | None:
    """Why ``doc`` cannot be compared with the paper (None if it can)."""
    if doc is None:
        return Verdict("pending", PENDING)
    if doc.get("profile") != "paper":
        return Verdict("smoke", SMOKE)
    if not doc["provenance"].get("finished", False):
        return Verdict("unfinished", f"unfinished run ({progress_text(doc)}) — not comparable")
    return None


def progress_text(doc: Mapping[str, Any]) -> str:
    """'seed 0: 45,000 of 100,000 meta-iterations; ...' from a results file's ``extra.iterations``."""
    extra = doc.get("extra", {})
    if "curves_finished" in extra:   # a figure assembled from the queue's curves (reptile_lib.figures)
        return f"{extra['curves_finished']} of {len(extra['points'])} {'curves' if extra.get('figure') == 'figure3' else 'points'} finished"
    total = doc.get("config", {}).get("meta_iters")
    its = extra.get("iterations", {})
    if not its or total is None:
        return "training not complete"
    return "; ".join(f"seed {s}: {int(i):,} of {int(total):,} meta-iterations" for s, i in sorted(its.items()))


def verdict(number: Any, doc: Mapping[str, Any] | None, metric: str | None = None) -> Verdict:
    """The verdict of a printed ``paper.PaperNumber`` against our results file ``doc``."""
    if getattr(number, "config", None) is None:
        return Verdict("context", getattr(number, "not_compared", "") or "context only (not re-run)")
    why = run_status(doc)
    if why is not None:
        return why
    m = doc["metrics"].get(metric or number.metric)
    if m is None:
        return Verdict("missing", MISSING)
    return compare(number.mean, number.pm, Ours.of(m), getattr(number, "digits", 2))


# ---------------------------------------------------------------- rows and tables
def cell_row(number: Any, doc: Mapping[str, Any] | None, show_smoke: bool = False) -> dict:
    """One cell of a paper table with ours beside it.

    Columns: algorithm, setting, paper (its ``mean ± pm``), ours (mean ± 95% interval over tasks),
    seeds (count and sd of their means), difference, combined (U), verdict. Numbers of a run that
    is not compared (smoke) are left out unless ``show_smoke``: they vary from machine to machine.
    """
    v = verdict(number, doc)
    m = doc["metrics"].get(number.metric) if doc is not None and number.config is not None else None
    ours = Ours.of(m) if m is not None else None
    hide = ours is not None and v.status == "smoke" and not show_smoke
    return {"algorithm": number.algorithm, "setting": number.setting, "paper": number.text(),
            "ours": "(smoke run)" if hide else (ours.text() if ours else "—"),
            "seeds": "—" if hide or ours is None else ours.seeds_text(),
            "difference": f"{v.diff:+.2f}" if v.diff is not None else "—",
            "combined ±": f"{v.combined:.2f}" if v.combined is not None else "—",
            "verdict": v.text}


def comparison_rows(numbers: Iterable[Any], docs: Mapping[str, Mapping[str, Any] | None],
                    show_smoke: bool = False) -> list[dict]:
    """:func:`cell_row` for each number, with ``docs[number.config]`` as ours."""
    return [cell_row(n, docs.get(n.config) if n.config else None, show_smoke) for n in numbers]


def frame(rows: Sequence[dict], index: Sequence[str] | str | None = ("algorithm", "setting")):
    """A list of rows as a pandas DataFrame (indexed for display)."""
    import pandas as pd

    f = pd.DataFrame(list(rows))
    if index and len(f):
        f = f.set_index(list(index) if not isinstance(index, str) else index)
    return f


def text(table) -> str:
    """Deterministic plain text of a DataFrame (what the strict notebook cells print)."""
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 80):
        return table.to_string()


def table2_rows(docs: Mapping[str, Mapping[str, Any] | None], show_smoke: bool = False) -> list[dict]:
    """Table 2's Reptile cells (5- and 20-way, 1- and 5-shot, with and without transduction) with ours."""
    from . import paper

    return comparison_rows([n for n in paper.TABLE2 if n.config], docs, show_smoke)


def table2_takeaways(docs: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Table 2 in a few sentences (the Omniglot chapter's summary): how many of the cells we have run are
    within the paper's uncertainty (:func:`verdict`), which are not, and which are not produced yet."""
    rows = table2_rows(docs)
    judged = [r for r in rows if r["ours"] != "—"]
    out = []
    if judged:
        within = [r for r in judged if r["verdict"].startswith("within")]
        seeds = "; ".join(
            f"{name}: {len(d['provenance']['seeds'])} of {len(d['provenance'].get('seeds_planned', d['provenance']['seeds']))} "
            "seeds" for name, d in docs.items() if d is not None)
        out.append(f"**{len(within)} of the {len(judged)} cells we have run are within the paper's uncertainty** "
                   f"({seeds}).")
        out += [f"{r['algorithm']}, {r['setting']}: {r['verdict']} (paper {r['paper']}, ours {r['ours']})."
                for r in judged if r not in within]
    missing: dict[str, list[str]] = {}
    for r in rows:
        if r["ours"] == "—":
            missing.setdefault(r["setting"], []).append(r["algorithm"])
    if missing:
        out.append(f"Not produced yet, {sum(map(len, missing.values()))} cells: " + "; ".join(
            f"{setting} ({', '.join(algs)})" for setting, algs in missing.items()) + ".")
    return out


def verdict_summary(numbers: Iterable[Any], docs: Mapping[str, Mapping[str, Any] | None]) -> str:
    """'8 cells: 5 within, 2 below, 1 above' (or why none is compared), deterministic."""
    counts: dict[str, int] = {}
    texts: dict[str, str] = {}
    for n in numbers:
        v = verdict(n, docs.get(n.config) if n.config else None)
        counts[v.status] = counts.get(v.status, 0) + 1
        texts.setdefault(v.status, v.text)
    order = ("within", "above", "below", "unfinished", "smoke", "missing", "pending", "context")
    parts = [f"{counts[s]} {s if s in ('within', 'above', 'below') else texts[s]}" for s in order if s in counts]
    return f"{sum(counts.values())} cells: " + ", ".join(parts)


def metric_text(doc: Mapping[str, Any] | None, metric: str, show_smoke: bool = False) -> str:
    """'47.10 ± 0.31 (3 seeds, sd 0.20)' for one metric of ours, or why there is none."""
    why = run_status(doc)
    if doc is None:
        return "—"
    m = doc["metrics"].get(metric)
    if m is None:
        return MISSING
    if why is not None and why.status == "smoke" and not show_smoke:
        return "(smoke run)"
    o = Ours.of(m)
    seeds = f"{o.n_seeds} seed" + ("s" if o.n_seeds > 1 else "") + (f", sd {o.seed_sd:.2f}" if o.seed_sd is not None else "")
    tag = " [unfinished]" if why is not None and why.status == "unfinished" else ""
    return f"{o.text()} ({seeds}){tag}"


def cifar_fs_rows(doc: Mapping[str, Any] | None, show_smoke: bool = False) -> list[dict]:
    """The CIFAR-FS chapter's table: ours (no paper number exists), Bertinetto et al.'s references,
    and the paper's Mini-ImageNet Reptile rows for context (another data set: no verdict)."""
    from . import paper

    settings = [(1, 5), (5, 5)]
    rows = []
    for label, trans in (("Reptile (ours)", False), ("Reptile + transduction (ours)", True)):
        row = {"algorithm": label, "data set": "CIFAR-FS"}
        for shots, ways in settings:
            from .results import metric_name
            row[f"{shots}-shot {ways}-way"] = metric_text(doc, metric_name("test", shots, ways, trans), show_smoke) \
                if doc is not None else PENDING
        row["note"] = "this book; no published Reptile number on CIFAR-FS to compare with"
        rows.append(row)
    source = "Bertinetto et al. 2019, as tabulated by Lee et al. 2019 (MetaOptNet), Table 2"
    notes = {"MAML": f"{source}; 32-32-32-32 network; probably transductive (MAML's code normalises with the "
                     "test batch's statistics), like our '+ transduction' row; reference only",
             "prototypical networks": f"{source}; 64-64-64-64 network; reference only"}
    for group, data in ((paper.CIFAR_FS_REFERENCE, "CIFAR-FS"),
                        ([n for n in paper.TABLE1 if n.algorithm.startswith("Reptile")], "Mini-ImageNet")):
        by_alg: dict[str, dict] = {}
        for n in group:
            row = by_alg.setdefault(n.algorithm, {"algorithm": n.algorithm + (" (paper)" if data == "Mini-ImageNet" else ""),
                                                  "data set": data})
            row[n.setting] = n.text()
            row["note"] = (notes[n.algorithm] if data == "CIFAR-FS" else
                           "the paper's Table 1: a different data set, context only, no verdict")
        rows.extend(by_alg.values())
    return rows


def cifar_fs_takeaways(doc: Mapping[str, Any] | None) -> list[str]:
    """The CIFAR-FS chapter's summary (Table 1's stand-in): our four numbers, what transduction adds here and
    in the paper's Mini-ImageNet rows, and the published CIFAR-FS references beside them. No verdict."""
    from . import paper
    from .results import metric_name

    out = ["No published 5-way Reptile number on CIFAR-FS was found, and the paper's Table 1 is on Mini-ImageNet, "
           "which we do not have: this chapter gives no verdict against the paper."]
    if doc is None or not doc["provenance"].get("finished"):
        out.append("The paper-scale run is not finished: its numbers appear here when it is; until then the "
                   "pipeline check only shows that the code runs.")
        return out
    ours = {(s, t): 100 * doc["metrics"][metric_name("test", s, 5, t)]["mean"] for s in (1, 5) for t in (False, True)}
    seeds = list(doc["provenance"]["seeds"])
    planned = list(doc["provenance"].get("seeds_planned", seeds))
    rest = [s for s in planned if s not in seeds]
    which = (f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
             + (f"; seed{'s' if len(rest) > 1 else ''} {', '.join(map(str, rest))} still in the queue" if rest else ""))
    out.append(f"**Reptile on CIFAR-FS** ({which}): {ours[1, False]:.2f}% 1-shot and {ours[5, False]:.2f}% 5-shot, "
               f"{ours[1, True]:.2f}% and {ours[5, True]:.2f}% with transduction (5-way"
               f"{', mean over seeds' if len(seeds) > 1 else ''}; each on 10,000 test tasks per seed).")
    table1 = {(n.shots, n.transductive): n.mean for n in paper.TABLE1 if n.algorithm.startswith("Reptile")}
    gain = {s: (ours[s, True] - ours[s, False], table1[s, True] - table1[s, False]) for s in (1, 5)}
    out.append(f"Transduction (BatchNorm statistics over all the query images at once) adds {gain[1][0]:.2f} points in 1-shot and "
               f"{gain[5][0]:.2f} in 5-shot here; in the paper's Mini-ImageNet rows it adds {gain[1][1]:.2f} and "
               f"{gain[5][1]:.2f}.")
    refs: dict[str, dict[int, float]] = {}
    for n in paper.CIFAR_FS_REFERENCE:
        refs.setdefault(n.algorithm, {})[n.shots] = n.mean
    out.append("Beside the published CIFAR-FS references (other methods and networks, each with its own evaluation "
               "protocol; context, not a verdict): " + "; ".join(
                   f"{s}-shot, ours {ours[s, False]:.2f} ({ours[s, True]:.2f} with transduction) against "
                   + " and ".join(f"{alg} {v[s]:.1f}" for alg, v in refs.items()) for s in (1, 5)) + ".")
    return out


def gap_rows(doc: Mapping[str, Any] | None, ways: int, show_smoke: bool = False) -> list[dict]:
    """Train-class vs test-class accuracy of one run, per setting and protocol (the generalisation gap)."""
    from .results import metric_name

    rows = []
    if doc is None:
        return rows
    hide = doc.get("profile") != "paper" and not show_smoke
    for shots in (1, 5):
        for trans in (False, True):
            tr = doc["metrics"].get(metric_name("train", shots, ways, trans))
            te = doc["metrics"].get(metric_name("test", shots, ways, trans))
            if tr is None or te is None:
                continue
            a, b = Ours.of(tr), Ours.of(te)
            rows.append({"setting": f"{shots}-shot {ways}-way", "protocol": "transductive" if trans else "non-transductive",
                         "train classes": "(smoke run)" if hide else a.text(),
                         "test classes": "(smoke run)" if hide else b.text(),
                         "gap (train - test)": "—" if hide else f"{a.mean - b.mean:+.2f}"})
    return rows


def seed_rows(doc: Mapping[str, Any] | None, split: str = "test") -> list[dict]:
    """Every seed's mean of every metric of ``split`` (percent)."""
    rows = []
    if doc is None:
        return rows
    for name, m in sorted(doc["metrics"].items()):
        if not name.startswith(split + "_"):
            continue
        row = {"metric": name}
        for s in m.get("per_seed", ()):
            row[f"seed {s['seed']}"] = f"{100 * s['mean']:.2f} ± {100 * s['ci95']:.2f}"
        rows.append(row)
    return rows


def status_line(name: str, doc: Mapping[str, Any] | None) -> str:
    """One sentence on what a chapter shows for results file ``name`` (deterministic: no dates, no timings)."""
    if doc is None:
        return f"{name}: {PENDING}; results/{name}.json does not exist yet."
    if doc.get("profile") != "paper":
        return f"{name}: smoke run (small, CPU-sized) — its numbers only show that the pipeline runs; not comparable."
    p = doc["provenance"]
    seeds = ", ".join(str(s) for s in p["seeds"])
    pending = doc.get("extra", {}).get("pending_seeds") or {}
    more = ("; seeds still training: " + ", ".join(f"{s} (at {int(i):,})" for s, i in sorted(pending.items()))) \
        if pending else ""
    if not p.get("finished", False):
        return f"{name}: UNFINISHED paper-scale run ({progress_text(doc)}); not compared with the paper{more}."
    return f"{name}: paper-scale run, finished, seeds {seeds}{more}."


def paper_rows(numbers: Iterable[Any]) -> list[dict]:
    """A printed table as the paper lays it out: one row per algorithm, one column per setting."""
    rows: dict[str, dict] = {}
    for n in numbers:
        rows.setdefault(n.algorithm, {"algorithm": n.algorithm})[n.setting] = n.text()
    return list(rows.values())


def hyperparameter_rows(config: Any, paper_values: Mapping[str, Any]) -> list[dict]:
    """Our config field by field against the paper's (Appendix A) values; eval_batch per shots."""
    rows = []
    for field, theirs in paper_values.items():
        if field == "eval_batch":
            ours = {e.shots: e.eval_batch for e in config.evals}
            text_p = ", ".join(f"{b} ({s}-shot)" for s, b in sorted(theirs.items()))
            text_o = ", ".join(f"{b} ({s}-shot)" for s, b in sorted(ours.items()))
            same = ours == dict(theirs)
        elif field == "eval_iters":
            its = {e.eval_iters for e in config.evals}
            text_p, text_o, same = str(theirs), ", ".join(str(i) for i in sorted(its)), its == {theirs}
        else:
            ours = getattr(config, field)
            text_p, text_o, same = f"{theirs:g}" if isinstance(theirs, float) else f"{theirs:,}", \
                f"{ours:g}" if isinstance(ours, float) else f"{ours:,}", ours == theirs
        rows.append({"field": field, "paper": text_p, "ours": text_o, "same": "yes" if same else "NO"})
    return rows


# ---------------------------------------------------------------- Figures 3 and 4: the findings, with numbers
def curve_mean(doc: Mapping[str, Any], name: str, protocol: str = "nontransductive") -> tuple[float, float] | None:
    """Learning speed (Figure 3): mean accuracy over a run's learning-curve points (percent) and its 95%
    interval (the points' intervals combined)."""
    key = f"{doc['extra']['monitor']['split']}_{protocol}"
    pts = [q for q in doc["extra"]["curves"].get(name, []) if key in q]
    if not pts:
        return None
    mean = 100 * sum(q[key] for q in pts) / len(pts)
    ci = 100 * math.sqrt(sum(q.get(f"{key}_ci95", 0.0) ** 2 for q in pts)) / len(pts)
    return mean, ci


def _final(doc: Mapping[str, Any], point: Mapping[str, Any], protocol: str = "nontransductive") -> tuple[float, float] | None:
    from .sweeps import point_metric

    m = point_metric(doc, point, protocol)
    return None if m is None else (100 * m["mean"], 100 * m["ci95"])


def _figure_status(doc: Mapping[str, Any] | None) -> str | None:
    why = run_status(doc)
    if why is None:
        return None
    if why.status == "unfinished":
        return "unfinished run — not evaluated"
    return why.text


def figure3_findings(doc: Mapping[str, Any] | None) -> list[dict]:
    """The paper's Figure 3 findings, each with our numbers and whether it holds.

    Learning speed is the mean accuracy over a curve's points (its area, normalised), with the
    points' 95% intervals combined; final accuracy is the 10,000-task evaluation at the end.
    - g1 alone barely learns: g1's final accuracy is below every other curve's, intervals apart;
    - more gradients learn faster: the area grows g1+g2 < g1+g2+g3 < g1+...+g4 (and the same for
      the averages);
    - g2 against g1+g2: which learns faster, and by how much (the paper states no expectation: a
      comparison of ours, ``paper_claim`` False, left out of the scoreboard);
    - each sum against its average (the same k gradients, an outer step k times larger): which learns
      faster for k = 2, 3, 4 (a comparison the figure invites; the paper states no expectation, so the
      row has ``paper_claim`` False and the scoreboard leaves it out).
    """
    claims = ("g1 alone barely learns (joint training)", "more inner gradients learn faster: g1+g2 < g1+g2+g3 < g1+...+g4",
              "... and for the averages: (g1+g2)/2 < (g1+g2+g3)/3 < (g1+...+g4)/4", "g2 (FOMAML) against g1+g2 (Reptile)",
              "sums against averages: g1+...+gk against (g1+...+gk)/k, k = 2, 3, 4")
    status = _figure_status(doc)
    if status is not None:
        return [{"finding": c, "ours": "—", "holds": status, "paper_claim": c not in claims[3:]} for c in claims]
    pts = {p["algorithm"]: p for p in doc["extra"]["points"]}
    final = {a: _final(doc, p) for a, p in pts.items()}
    area = {a: curve_mean(doc, p["config"]) for a, p in pts.items()}
    rows = []
    g1 = final.get("g1")
    others = [v for a, v in final.items() if a != "g1" and v is not None]
    if g1 is None or not others:
        rows.append({"finding": claims[0], "ours": "—", "holds": MISSING})
    else:
        lo = min(others, key=lambda v: v[0] - v[1])
        holds = g1[0] + g1[1] < lo[0] - lo[1]
        start = _first_point(doc, pts["g1"]["config"])
        rows.append({"finding": claims[0],
                     "ours": f"g1 {g1[0]:.1f} ± {g1[1]:.1f}% (chance 20%"
                             + (f"; {start:.1f}% at its first curve point" + (", so it falls rather than learns"
                                                                               if start > g1[0] + g1[1] else "")
                                if start is not None else "")
                             + f"); the other nine {min(v[0] for v in others):.1f}–{max(v[0] for v in others):.1f}%",
                     "holds": "holds" if holds else "does not hold"})
    for claim, labels in ((claims[1], ("g1+g2", "g1+g2+g3", "g1+g2+g3+g4")),
                          (claims[2], ("(g1+g2)/2", "(g1+g2+g3)/3", "(g1+g2+g3+g4)/4"))):
        vals = [area.get(a) for a in labels]
        if any(v is None for v in vals):
            rows.append({"finding": claim, "ours": "—", "holds": MISSING})
            continue
        increasing = all(a[0] < b[0] for a, b in zip(vals, vals[1:]))
        apart = all(b[0] - a[0] > math.hypot(a[1], b[1]) for a, b in zip(vals, vals[1:]))
        rows.append({"finding": claim, "ours": "curve means " + " < ".join(f"{v[0]:.1f}" for v in vals)
                     if increasing else "curve means " + ", ".join(f"{v[0]:.1f}" for v in vals),
                     "holds": ("holds" if apart else "holds, within noise") if increasing else "does not hold"})
    a, b = area.get("g2"), area.get("g1+g2")
    fa, fb = final.get("g2"), final.get("g1+g2")
    if None in (a, b, fa, fb):
        rows.append({"finding": claims[3], "ours": "—", "holds": MISSING})
    else:
        d, u = b[0] - a[0], math.hypot(a[1], b[1])
        lead = "g1+g2 learns faster" if d > 0 else "g2 learns faster"
        end = "g1+g2" if fb[0] > fa[0] else "g2"
        rows.append({"finding": claims[3],
                     "ours": f"curve means g2 {a[0]:.1f}, g1+g2 {b[0]:.1f}; final {fa[0]:.1f} vs {fb[0]:.1f}%",
                     "holds": f"{lead} (curve mean, {abs(d):.1f} points" + ("" if abs(d) > u else f", within ±{u:.1f}")
                              + f"); {end} ends higher"})
    for r in rows:   # the paper expects the first two findings; g2 against g1+g2 is a comparison of ours
        r["paper_claim"] = r["finding"] != claims[3]
    rows.append({**_sums_against_averages(claims[4], area), "paper_claim": False})
    return rows


def _first_point(doc: Mapping[str, Any], name: str, protocol: str = "nontransductive") -> float | None:
    """A run's accuracy (percent) at its first learning-curve point (iteration 1: nearly the initialisation)."""
    key = f"{doc['extra']['monitor']['split']}_{protocol}"
    pts = [q for q in doc["extra"]["curves"].get(name, []) if key in q]
    return 100 * pts[0][key] if pts else None


def _sums_against_averages(claim: str, area: Mapping[str, tuple[float, float] | None]) -> dict:
    """Figure 3: for each k, which of the sum and the average of the k gradients learns faster (curve means)."""
    sums = {2: "g1+g2", 3: "g1+g2+g3", 4: "g1+g2+g3+g4"}
    pairs = {k: (area.get(s), area.get(f"({s})/{k}")) for k, s in sums.items()}
    if any(a is None or b is None for a, b in pairs.values()):
        return {"finding": claim, "ours": "—", "holds": MISSING}
    ours = "; ".join(f"k = {k}: {a[0]:.1f} vs {b[0]:.1f}" for k, (a, b) in pairs.items())
    # equal at the precision shown (one decimal) is a tie, not a lead
    ahead = {k: "tie" if f"{a[0]:.1f}" == f"{b[0]:.1f}" else "sum" if a[0] > b[0] else "average"
             for k, (a, b) in pairs.items()}
    noise = [k for k, (a, b) in pairs.items() if ahead[k] != "tie" and abs(a[0] - b[0]) <= math.hypot(a[1], b[1])]
    leaders = sorted(set(ahead.values()))
    if len(leaders) == 1:
        verdict = f"{leaders[0]} ahead for k = 2, 3, 4" if leaders[0] != "tie" else "tie for k = 2, 3, 4"
    else:
        verdict = "; ".join((f"{who} ahead" if who != "tie" else "tie") + " for k = "
                            + ", ".join(str(k) for k in ahead if ahead[k] == who)
                            for who in ("sum", "average", "tie") if who in leaders)
    if noise:
        verdict += f" (within noise for k = {', '.join(map(str, noise))})"
    return {"finding": claim, "ours": "curve means, sum vs average: " + ours, "holds": verdict}


def figure4_findings(doc: Mapping[str, Any] | None) -> list[dict]:
    """Figure 4's finding per algorithm and panel: accuracy with vs without last-batch overlap.

    For panels (a) and (b), the swept values split into those where shared-tail FOMAML's last
    mini-batch overlaps earlier ones (``sweeps.last_batch_overlap`` > 0) and those where it does
    not; the change is mean(overlap values) - mean(no-overlap values), with the points' 95%
    intervals combined: "degrades" below minus its interval, "improves" above it, else "stable".
    The paper: shared-tail FOMAML degrades, Reptile and separate-tail FOMAML stay stable.
    """
    from .sweeps import ALGORITHMS, last_batch_overlap

    status = _figure_status(doc)
    if status is not None:
        return [{"panel": p, "algorithm": a, "no overlap": "—", "overlap": "—", "change": "—", "verdict": status}
                for p in ("inner_iters", "inner_batch") for a in ALGORITHMS]
    runs = {r["name"]: r for r in doc["config"]["runs"]}
    rows = []
    for panel in ("inner_iters", "inner_batch"):
        pts = [p for p in doc["extra"]["points"] if p["panel"] == panel]
        overlap_values = set()
        for p in pts:
            if p["algorithm"] == "fomaml-shared":
                r = runs[p["config"]]
                if last_batch_overlap(r["inner_iters"], r["inner_batch"], r["classes"] * r["train_shots"]) > 0:
                    overlap_values.add(p["value"])
        for alg in ALGORITHMS:
            groups: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for p in pts:
                if p["algorithm"] == alg:
                    f = _final(doc, p)
                    if f is not None:
                        groups[p["value"] in overlap_values].append(f)
            if not groups[False] or not groups[True]:
                rows.append({"panel": panel, "algorithm": alg, "no overlap": "—", "overlap": "—", "change": "—",
                             "verdict": MISSING})
                continue
            m = {k: (sum(v[0] for v in g) / len(g), math.sqrt(sum(v[1] ** 2 for v in g)) / len(g)) for k, g in groups.items()}
            d, u = m[True][0] - m[False][0], math.hypot(m[True][1], m[False][1])
            rows.append({"panel": panel, "algorithm": alg, "no overlap": f"{m[False][0]:.2f}",
                         "overlap": f"{m[True][0]:.2f}", "change": f"{d:+.2f} ± {u:.2f}",
                         "verdict": "degrades" if d < -u else ("improves" if d > u else "stable")})
    return rows


def network_rows(kind: str, sizes: Sequence[int], channels: int, ways: int = 5) -> list[dict]:
    """Feature-map sizes, flattened features and parameters of the paper's network at each input size.

    Measured by running a dummy batch through ``models.build_model(kind, ...)`` (no arithmetic by hand).
    """
    import torch

    from .models import build_model

    rows = []
    for size in sizes:
        model = build_model(kind, ways, size, channels)
        x = torch.zeros(2, channels, size, size)
        maps = [size]
        for layer in model.features:
            x = layer(x)
            if x.shape[-1] != maps[-1]:
                maps.append(x.shape[-1])
        rows.append({"input": f"{size}x{size}x{channels}", "feature maps": " -> ".join(str(m) for m in maps),
                     "features": model.classifier.in_features,
                     "parameters": f"{sum(p.numel() for p in model.parameters()):,}"})
    return rows


# ---------------------------------------------------------------- the reproduction scoreboard
# Which results file holds each claim, and the chapter that shows it.
SCOREBOARD_SOURCES: dict[str, str] = {
    "sine": "01_sine", "taylor": "02_taylor", "geometry": "03_geometry", "omniglot_5way": "04_omniglot",
    "omniglot_20way": "04_omniglot", "cifar_fs_5way": "05_cifar_fs", "figure3": "06_figure3", "figure4": "07_figure4"}
# Queued runs that make no claim's number but a chapter shows (the size of a deviation, measured).
QUEUE_ONLY_SOURCES: dict[str, str] = {"omniglot_5way_mean_carry": "04_omniglot"}
SCOREBOARD_COLUMNS = ("Claim", "Paper", "Ours", "Scale", "Device", "Verdict", "Chapter")
NOT_RUN = "not run"


def expected_config(name: str) -> Any:
    """The config a results file must have been made with to count (the one its chapter loads)."""
    from . import configs, geometry, sine, sweeps, taylor

    if name == "sine":
        return sine.get_experiment("paper")
    if name == "taylor":
        return taylor.get_config("paper")
    if name == "geometry":
        return geometry.get_config("paper")
    if name in sweeps.FIGURES:
        return sweeps.figure_config(name, "paper")
    from .reproduce import load_plan

    plan = load_plan()
    if name in plan.experiments:   # the queue's runs (runs/plan.toml)
        return plan.experiments[name].config
    return configs.get_config(name)


def scoreboard_docs(results_dir: Any = None) -> dict[str, dict | None]:
    """The paper-scale results documents the scoreboard reads (None: absent or made by another config)."""
    from pathlib import Path

    from .paths import REPO_ROOT
    from .results import ResultsMismatchError, load_results

    folder = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    docs: dict[str, dict | None] = {}
    for name in SCOREBOARD_SOURCES:
        path = folder / f"{name}.json"
        try:
            docs[name] = load_results(path, expected_config(name), "paper") if path.exists() else None
        except ResultsMismatchError:
            docs[name] = None
    return docs


def _queue_text(name: str, queue: Sequence[Mapping[str, Any]], done_seeds: Sequence[int] = ()) -> str | None:
    """'queue: seed 0 training: 12,000 of 100,000; seeds 1, 2 pending' for the units of one experiment.

    Figures 3 and 4 are one experiment per run (``figure3_<curve>``, ``figure4_<run>``): counted per seed
    ('queue: seed 0: 3 of 10 curves done, figure3_g4 training: 2,000 of 40,000, 6 pending')."""
    from .sweeps import FIGURES

    if name in FIGURES:   # a seed counts as done only when all of its runs are
        return _figure_queue_text(name, queue)
    prefix = f"{name}-seed"
    units = [(int(r["unit"][len(prefix):]), r["state"]) for r in queue
             if str(r["unit"]).startswith(prefix) and r["unit"][len(prefix):].isdigit()]
    units = [(s, st) for s, st in units if s not in done_seeds and st != "done"]
    if not units:
        return None
    pending = [s for s, st in units if st == "pending"]
    parts = [f"seed {s} {st}" for s, st in units if st != "pending"]
    if pending:
        parts.append(("seed " if len(pending) == 1 else "seeds ") + ", ".join(map(str, pending)) + " pending")
    return "queue: " + "; ".join(parts)


def _figure_queue_text(figure: str, queue: Sequence[Mapping[str, Any]]) -> str | None:
    by_seed: dict[int, list[tuple[str, str]]] = {}
    for r in queue:
        exp, sep, seed = str(r["unit"]).rpartition("-seed")
        if exp.startswith(f"{figure}_") and sep and seed.isdigit():
            by_seed.setdefault(int(seed), []).append((exp, r["state"]))
    parts = []
    for seed, units in sorted(by_seed.items()):
        done = sum(st == "done" for _, st in units)
        if done == len(units):
            continue
        running = [f"{exp} {st}" for exp, st in units if st not in ("done", "pending")]
        pending = sum(st == "pending" for _, st in units)
        if pending == len(units):
            parts.append(f"seed {seed} pending")
            continue
        word = "curves" if figure == "figure3" else "runs"
        parts.append(", ".join([f"seed {seed}: {done} of {len(units)} {word} done", *running]
                               + ([f"{pending} pending"] if pending else [])))
    return "queue: " + "; ".join(parts) if parts else None


def _scale(name: str, doc: Mapping[str, Any] | None, queue: Sequence[Mapping[str, Any]]) -> str:
    """'paper' / 'paper, 1 of 3 seeds (queue: ...)' / 'unfinished (queue: ...)' / 'not run'."""
    if doc is not None and doc["provenance"].get("finished", False):
        seeds = list(doc["provenance"].get("seeds", []))
        planned = list(doc["provenance"].get("seeds_planned", seeds))
        more = _queue_text(name, queue, seeds)
        text = "paper" + (f", {len(seeds)} of {len(planned)} seeds" if len(planned) > len(seeds) else "")
        return text + (f" ({more})" if more else "")
    more = _queue_text(name, queue)
    if doc is not None:
        return f"unfinished ({progress_text(doc)})"
    if more is None:
        return NOT_RUN
    if all(r["state"] == "pending" for r in queue if _unit_of(name, str(r["unit"]))):
        return f"not run yet ({more})"
    return f"unfinished ({more})"


def _unit_of(name: str, unit: str) -> bool:
    """Whether queue unit ``unit`` ('omniglot_5way-seed0') belongs to results file ``name`` (a figure: its runs)."""
    from .sweeps import FIGURES

    exp, _, seed = unit.rpartition("-seed")
    return seed.isdigit() and (exp == name or (name in FIGURES and exp.startswith(f"{name}_")))


def _device(doc: Mapping[str, Any] | None) -> str:
    if doc is None:
        return "—"
    return short_device(str(doc["provenance"].get("device", "—")))


_TRADEMARKS = re.compile(r"\((?:R|TM)\)|\bCPU\b|\bProcessor\b|@.*$", re.IGNORECASE)


def short_device(device: str) -> str:
    """A results file's device list as a table cell: each CPU model once, with its thread counts.

    'cpu (1 thread, x86_64, Intel(R) Xeon(R) Processor); cpu (2 threads, x86_64, Intel(R) Xeon(R) Processor)'
    -> 'Intel Xeon CPU, 1 or 2 threads'. Other parts (a GPU's name) are kept as they are; the full
    description stays in the file's provenance and in the chapters' provenance lines.
    """
    models: dict[str, set[int]] = {}
    others: list[str] = []
    for part in (p.strip() for p in device.replace("(1 threads", "(1 thread").split(";")):   # older wording
        m = re.fullmatch(r"cpu \((\d+) threads?, [^,()]+(?:, (.+?))?(?:, \d+ cores)?\)", part)
        if m is None:
            if part:
                others.append(part)
            continue
        model = re.sub(r"\s+", " ", _TRADEMARKS.sub("", m.group(2) or "")).strip()
        models.setdefault(model, set()).add(int(m.group(1)))
    cells = []
    for model, threads in models.items():
        counts = sorted(threads)
        cells.append(f"{model + ' ' if model else ''}CPU, {' or '.join(map(str, counts))} "
                     f"thread{'' if counts == [1] else 's'}")
    return "; ".join(cells + others) or "—"


def _not_compared(doc: Mapping[str, Any] | None, scale: str) -> str:
    """The verdict of a claim without a finished paper-scale run (the module docstring's rule)."""
    if doc is None:
        return "not finished yet" if scale.startswith("unfinished") else "not run yet"
    return "unfinished run: not compared"


def verdict_class(text: str) -> str:
    """A scoreboard verdict as 'reproduced', 'missed', 'pending' or 'context'."""
    if text.startswith(("not run", "not finished", "unfinished", PENDING)):
        return "pending"
    if text.startswith(("holds", "within", "yes")):
        return "reproduced"
    # "no" as a word only: "none (measured on CIFAR-FS, ...)" is a number without a verdict, not a miss
    if text.startswith(("does not hold", "above", "below")) or re.match(r"no\b", text):
        return "missed"
    return "context"


def _table_rows(docs: Mapping[str, Mapping[str, Any] | None], queue: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Tables 1 and 2: every Reptile cell (the paper's own numbers; MAML rows are quoted from Finn et al.)."""
    from . import paper

    rows = []
    for n in paper.TABLE2:
        if not n.config:
            continue
        doc = docs.get(n.config)
        scale = _scale(n.config, doc, queue)
        v = verdict(n, doc)
        m = doc["metrics"].get(n.metric) if doc is not None else None
        finished = doc is not None and doc["provenance"].get("finished", False)
        rows.append({"Claim": f"Table 2 (Omniglot): {n.algorithm}, {n.setting}", "Paper": n.text(),
                     "Ours": Ours.of(m).text() if m is not None and finished else "—", "Scale": scale,
                     "Device": _device(doc), "Verdict": v.text if v.compared or v.status == "missing"
                     else _not_compared(doc, scale), "source": n.config})
    # Table 1 is Mini-ImageNet, which we do not have: CIFAR-FS stands in, so ours is shown beside
    # the paper's number as context, never with a verdict.
    doc = docs.get("cifar_fs_5way")
    scale = _scale("cifar_fs_5way", doc, queue)
    for n in paper.TABLE1:
        if not n.algorithm.startswith("Reptile"):
            continue
        m = doc["metrics"].get(n.metric) if doc is not None else None
        finished = doc is not None and doc["provenance"].get("finished", False)
        rows.append({"Claim": f"Table 1 (Mini-ImageNet): {n.algorithm}, {n.setting}", "Paper": n.text(),
                     "Ours": f"{Ours.of(m).text()} on CIFAR-FS" if m is not None and finished else "—",
                     "Scale": scale, "Device": _device(doc),
                     "Verdict": "none (measured on CIFAR-FS, another data set)" if finished
                     else f"{_not_compared(doc, scale)}; no verdict (another data set)",
                     "source": "cifar_fs_5way"})
    return rows


def _sine_row(doc: Mapping[str, Any] | None) -> dict:
    """Figure 1: after 32 steps on 10 points, the meta-learned initialisations fit far better than a random one.

    'Far better' is read as at least ten times lower grid MSE, with the 95% intervals apart.
    """
    row = {"Claim": "Figure 1 (sine waves): from 10 points and 32 steps, a meta-learned initialisation "
                    "fits a new sine wave far better than a random one", "Paper": "shown on single tasks, no numbers"}
    if doc is None:
        return {**row, "Ours": "—", "Verdict": "not run yet"}
    m = doc["metrics"]
    rnd = m.get("mse_after_32_steps_random")
    ratios, holds = [], True
    for init, label in (("reptile", "Reptile"), ("maml", "MAML")):
        x = m.get(f"mse_after_32_steps_{init}")
        if rnd is None or x is None:
            return {**row, "Ours": "—", "Verdict": MISSING}
        r = rnd["mean"] / x["mean"]
        ratios.append(f"{label} {x['mean']:.3f}")
        holds &= r >= 10 and rnd["mean"] - rnd["ci95"] > x["mean"] + x["ci95"]
    ours = (f"grid MSE after 32 steps: random {rnd['mean']:.2f}, " + ", ".join(ratios)
            + f" (ReLU, {rnd['n_tasks']:,} tasks)")
    return {**row, "Ours": ours, "Verdict": "holds: both at least 10× lower" if holds else "does not hold"}


def _taylor_rows(doc: Mapping[str, Any] | None) -> list[dict]:
    """Section 5: the expansion (error order alpha^3 with AvgGradInner, alpha^2 without) and what AvgGradInner does."""
    claims = ("Section 5 (Taylor expansion): the MAML, FOMAML and Reptile updates are AvgGrad and AvgGradInner "
              "with the stated weights, up to O(α²)",
              "Section 5: following AvgGradInner makes different mini-batches' gradients of a task agree")
    rows = [{"Claim": c, "Paper": "derived analytically"} for c in claims]
    if doc is None:
        return [{**r, "Ours": "—", "Verdict": "not run yet"} for r in rows]
    m = doc["metrics"]
    full = [v["mean"] for k, v in m.items() if k.startswith("step_error_slope_") and "_zeroth_" not in k]
    zeroth = [v["mean"] for k, v in m.items() if k.startswith("step_error_slope_zeroth_")]
    if not full or not zeroth:
        rows[0].update({"Ours": "—", "Verdict": MISSING})
    else:
        # The step error shrinks like alpha^3 when the expansion is right and like alpha^2 without
        # its second term: each fitted slope must be nearer its order than the other.
        holds = all(s > 2.5 for s in full) and all(s < 2.5 for s in zeroth)
        rows[0].update({"Ours": f"step-error slopes {min(full):.2f}–{max(full):.2f} (expected 3); without "
                                f"AvgGradInner {min(zeroth):.2f}–{max(zeroth):.2f} (expected 2)",
                        "Verdict": "holds" if holds else "does not hold"})
    ip, cos = m.get("inner_product_held_out_change_agi"), m.get("cosine_held_out_change_agi")
    if ip is None or cos is None:
        rows[1].update({"Ours": "—", "Verdict": MISSING})
    else:
        rows[1].update({"Ours": f"on held-out tasks: inner product {ip['mean']:+.1f}, cosine {cos['mean']:+.3f}",
                        "Verdict": "holds" if ip["mean"] > 0 and cos["mean"] > 0 else "does not hold"})
    return rows


def _geometry_row(doc: Mapping[str, Any] | None) -> dict:
    """Section 6: Reptile's fixed point nears the minimiser of the mean squared distance to the tasks' solution sets as k grows."""
    row = {"Claim": "Section 6 (geometry): Reptile converges towards the point nearest to all tasks' solution "
                    "sets, the closer the more inner steps k", "Paper": "argued, no numbers"}
    if doc is None:
        return {**row, "Ours": "—", "Verdict": "not run yet"}
    m, parts, holds = doc["metrics"], [], True
    for kind in ("lines", "circles"):
        ks = sorted(int(k.rsplit("_k", 1)[1]) for k in m if k.startswith(f"{kind}_distance_reptile_full_k"))
        if len(ks) < 2:
            return {**row, "Ours": "—", "Verdict": MISSING}
        d = [m[f"{kind}_distance_reptile_full_k{k}"]["mean"] for k in ks]
        holds &= all(b <= a for a, b in zip(d, d[1:])) and d[-1] < d[0] / 10
        parts.append(f"{kind}: distance {d[0]:.3f} (k = {ks[0]}) to {d[-1]:.0e} (k = {ks[-1]})")
    return {**row, "Ours": "; ".join(parts), "Verdict": "holds" if holds else "does not hold"}


def _figure3_rows(doc: Mapping[str, Any] | None, scale: str) -> list[dict]:
    rows = []
    for f in figure3_findings(doc):
        if not f["paper_claim"]:   # a comparison of ours, not a claim of the paper
            continue
        holds = f["holds"]
        if doc is None or not doc["provenance"].get("finished", False):
            holds = _not_compared(doc, scale)
        rows.append({"Claim": f"Figure 3 (inner gradients): {f['finding']}", "Paper": "curves, no numbers",
                     "Ours": f["ours"], "Verdict": holds})
    return rows


FIGURE4_CLAIMS = {"fomaml-shared": ("FOMAML with a shared tail degrades once its last mini-batch overlaps earlier ones",
                                    "degrades"),
                  "reptile": ("Reptile is insensitive to the inner iterations and batch size", "stable"),
                  "fomaml-separate": ("FOMAML with a separate tail is insensitive to them", "stable")}


def _figure4_rows(doc: Mapping[str, Any] | None, scale: str) -> list[dict]:
    findings = figure4_findings(doc)
    rows = []
    for alg, (claim, expected) in FIGURE4_CLAIMS.items():
        mine = [f for f in findings if f["algorithm"] == alg]
        row = {"Claim": f"Figure 4 (sensitivity): {claim}", "Paper": "curves, no numbers"}
        if doc is None or not doc["provenance"].get("finished", False):
            rows.append({**row, "Ours": "—", "Verdict": _not_compared(doc, scale)})
            continue
        ours = "; ".join(f"{f['panel']}: {f['change']} ({f['verdict']})" for f in mine)
        holds = all(f["verdict"] == expected for f in mine)
        rows.append({**row, "Ours": ours, "Verdict": "holds" if holds else "does not hold"})
    return rows


def scoreboard_rows(results_dir: Any = None, queue: Sequence[Mapping[str, Any]] | None = None) -> list[dict]:
    """One row per claim of the paper: the claim, the paper's number, ours, scale, device, verdict, chapter.

    Reads the paper-scale results documents of ``results_dir`` (default ``results/``) whose config
    is the one their chapter loads, and, for what is not finished, the queue's state (default
    ``reproduce.status_rows(reproduce.load_plan())``). Table cells get :func:`verdict`; the figure
    and section claims get the rule their row's function states. Nothing unfinished is compared.
    """
    if queue is None:
        from .reproduce import load_plan, status_rows

        queue = status_rows(load_plan())
    docs = scoreboard_docs(results_dir)
    rows = []
    for name, make in (("sine", lambda d, s: [_sine_row(d)]), ("taylor", lambda d, s: _taylor_rows(d)),
                       ("geometry", lambda d, s: [_geometry_row(d)])):
        doc = docs[name] if docs[name] is not None and docs[name]["provenance"].get("finished", False) else None
        scale = _scale(name, docs[name], queue)
        for r in make(doc, scale):
            rows.append({**r, "Scale": scale, "Device": _device(docs[name]), "source": name})
    rows += _table_rows(docs, queue)
    for name, make in (("figure3", _figure3_rows), ("figure4", _figure4_rows)):
        scale = _scale(name, docs[name], queue)
        for r in make(docs[name], scale):
            rows.append({**r, "Scale": scale, "Device": _device(docs[name]), "source": name})
    for r in rows:
        r["Chapter"] = SCOREBOARD_SOURCES[r.pop("source")]
    return [{c: r[c] for c in SCOREBOARD_COLUMNS} for r in rows]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CHAPTER_TITLES = {"01_sine": "Figure 1: sine waves", "02_taylor": "Section 5: the Taylor expansion",
                  "03_geometry": "Section 6: the geometric view", "04_omniglot": "Table 2: few-shot Omniglot",
                  "05_cifar_fs": "Table 1: Mini-ImageNet (CIFAR-FS stands in)",
                  "06_figure3": "Figure 3: inner-gradient combinations", "07_figure4": "Figure 4: sensitivity"}
# What a reader sees: the chapter heads a group of rows; scale and device share a column.
SCOREBOARD_DISPLAY = ("Claim", "Paper", "Ours", "Scale, device", "Verdict")


def _short_claim(claim: str) -> str:
    """The claim without its 'Table 2 (Omniglot): ' prefix, which the group's heading row says."""
    rest = claim.split(": ", 1)[1] if ": " in claim else claim
    first = rest.split(" ", 1)[0]
    return rest if any(c.isdigit() for c in first) else rest[:1].upper() + rest[1:]   # 'g1 alone' stays


_QUEUE_PART = re.compile(r" \(queue: [^()]*\)")


def _scale_device(row: Mapping[str, Any]) -> str:
    """The scale (without where the queue stands: :func:`queue_markdown` says that once) and the device."""
    scale, device = _QUEUE_PART.sub("", str(row["Scale"])), str(row["Device"])
    return scale if device in ("", "—") else f"{scale}; {device}"


def queue_markdown(queue: Sequence[Mapping[str, Any]] | None = None, as_of: str | None = None) -> str:
    """Where the queue stands for every results file the scoreboard reads, once each, as a Markdown list
    under a lead line ('' when nothing is left in the queue): the scoreboard's cells leave it out.
    ``as_of``: when that state was saved (default, with the plan's queue: ``reproduce.queue_time``)."""
    if queue is None:
        queue, as_of = _queue_now()
    items = []
    for name, chapter in {**SCOREBOARD_SOURCES, **QUEUE_ONLY_SOURCES}.items():
        text = _queue_text(name, queue)
        if text:
            items.append(f"- {CHAPTER_TITLES[chapter].split(':')[0]}, `{name}`: {text.removeprefix('queue: ')}")
    if not items:
        return ""
    when = f", as of {as_of}" if as_of else ""
    return (f"Still in the queue of paper-scale runs{when} (`make reproduce`; `reptile status` adds the hours left):\n\n"
            + "\n".join(items) + "\n")


def _queue_now() -> tuple[list[dict], str | None]:
    """The plan's queue (``reproduce.status_rows``) and when its state was saved (``reproduce.queue_time``)."""
    from .reproduce import load_plan, queue_time, status_rows

    plan = load_plan()
    return status_rows(plan), queue_time(plan)


def scoreboard_markdown(rows: Sequence[Mapping[str, Any]], link_prefix: str = "") -> str:
    """The scoreboard as a MyST Markdown table (rendered as HTML): a heading row per chapter, linked with
    ``{doc}``, then its claims (:data:`SCOREBOARD_DISPLAY` columns).

    ``link_prefix`` is the path from the page that shows it to ``book/executed/`` (``"executed/"``
    from the landing page, ``""`` from a chapter).
    """
    if not rows:
        raise ValueError("no scoreboard rows: scoreboard_rows() returned nothing")
    lines = ["| " + " | ".join(SCOREBOARD_DISPLAY) + " |", "|" + "---|" * len(SCOREBOARD_DISPLAY)]
    chapter, shared = None, None
    for r in rows:
        if r["Chapter"] != chapter:
            chapter = r["Chapter"]
            title = CHAPTER_TITLES.get(chapter, chapter)
            # the device, said once in the chapter's heading row when all its measured claims share it
            devices = [str(x["Device"]) for x in rows if x["Chapter"] == chapter and x["Device"] not in ("", "—")]
            shared = devices[0] if len(set(devices)) == 1 else None
            device = f"ran on {shared}" if shared else ""
            heading = [f"**{{doc}}`{title} <{link_prefix}{chapter}>`**", "", "", _cell(device), ""]
            lines.append("|" + "|".join(f" {c} " if c else " " for c in heading) + "|")
        scale = _QUEUE_PART.sub("", str(r["Scale"])) if shared else _scale_device(r)
        cells = [_short_claim(r["Claim"]), r["Paper"], r["Ours"], scale, r["Verdict"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def scoreboard_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """'23 claims: 4 reproduced (...), 0 not reproduced, 19 not run or not finished yet.' (deterministic)."""
    counts = {k: 0 for k in ("reproduced", "missed", "context", "pending")}
    for r in rows:
        counts[verdict_class(r["Verdict"])] += 1
    parts = [f"{counts['reproduced']} reproduced (the claim holds, or ours is within the uncertainty)",
             f"{counts['missed']} not reproduced"]
    if counts["context"]:
        parts.append(f"{counts['context']} measured without a verdict")
    parts.append(f"{counts['pending']} not run or not finished yet")
    return f"{len(rows)} claims: " + ", ".join(parts) + "."


CARRY_COLUMNS = {"evaluation": "Evaluation", "tasks": "Tasks", "a": "Released order (%)", "b": "Mean carry (%)",
                 "difference": "Mean carry − released (points)"}


def metric_words(name: str) -> str:
    """``test_1shot_5way_nontransductive`` -> 'test, 1-shot 5-way, non-transductive' (a results metric in words)."""
    from .results import metric_parts

    split, shots, ways, transductive = metric_parts(name)
    return f"{split}, {shots}-shot {ways}-way, {'transductive' if transductive else 'non-transductive'}"


def carry_rows(plan: Any = None, released: str = "omniglot_5way", mean: str = "omniglot_5way_mean_carry") -> list[dict]:
    """The batched path's mean Adam carry against the released order at paper scale, task by task
    (:func:`reproduce.paired_by_task`): one row per evaluation both runs of a seed finished ([] until then);
    the :data:`CARRY_COLUMNS` as text, plus ``split``, ``metric`` and the difference and interval in points."""
    from . import reproduce
    from .results import metric_parts

    plan = plan or reproduce.load_plan()
    rows = []
    for mean_unit in plan.of(mean):
        twin = [u for u in plan.of(released) if u.seed == mean_unit.seed]
        for r in (reproduce.paired_by_task(plan, twin[0], mean_unit) if twin else None) or []:
            rows.append({"evaluation": f"seed {mean_unit.seed}, " + metric_words(r["evaluation"]),
                         "tasks": f"{r['tasks']:,}", "a": f"{100 * r['a']:.2f}", "b": f"{100 * r['b']:.2f}",
                         "difference": f"{100 * r['difference']:+.2f} ± {100 * r['ci95']:.2f}",
                         "split": metric_parts(r["evaluation"])[0], "metric": r["evaluation"], "seed": mean_unit.seed,
                         "points": 100 * r["difference"], "ci_points": 100 * r["ci95"]})
    return rows


def carry_summary(rows: Sequence[Mapping[str, Any]], released: Mapping[str, Any] | None = None) -> str | None:
    """What the paired comparison says on the test tasks, against the paper's ± for the same cells (Table 2)
    and, given the released order's results file ``released``, against the spread of its seeds; None without
    test rows."""
    from . import paper

    test = [r for r in rows if r["split"] == "test"]
    if not test:
        return None
    lo, hi = min(r["points"] for r in test), max(r["points"] for r in test)
    seeds = sorted({r["seed"] for r in test})
    clear = sum(abs(r["points"]) > r["ci_points"] for r in test)
    pm = [n.pm for n in paper.TABLE2 if n.algorithm.startswith("Reptile") and n.metric in {r["metric"] for r in test}]
    side = "lower" if hi < 0 else "higher" if lo > 0 else "lower or higher"
    span = (f"{abs(hi):.2f} to {abs(lo):.2f}" if hi < 0 else f"{lo:.2f} to {hi:.2f}" if lo > 0 else f"{lo:+.2f} to {hi:+.2f}")
    text = (f"On the {len(test)} test evaluations the mean carry scores {span} points {side} than the released order "
            f"({clear} of {len(test)} intervals exclude zero)")
    per_seed = {r["metric"]: [100 * p["mean"] for p in released["metrics"][r["metric"]]["per_seed"]]
                for r in test if released is not None and r["metric"] in released.get("metrics", {})}
    if len(per_seed) == len(test) and min(map(len, per_seed.values())) > 1:
        n_seeds = min(map(len, per_seed.values()))
        below = sum(float(r["b"]) < min(per_seed[r["metric"]]) for r in test)
        above = sum(float(r["b"]) > max(per_seed[r["metric"]]) for r in test)
        where = ("below the lowest" if not above else "above the highest" if not below else "outside the range")
        text += (f"; {below + above} of the {len(test)} mean-carry numbers lie {where} of the released order's "
                 f"{n_seeds} seeds")
    if pm:
        text += (f". The paper's ± for these cells is {min(pm):.2f} to {max(pm):.2f}: at the precision of Table 2, "
                 "carrying Adam's state task by task, as the released code does, matters ("
                 + (f"one mean-carry run, seed {seeds[0]})" if len(seeds) == 1 else
                    f"{len(seeds)} mean-carry runs, seeds {', '.join(map(str, seeds))})"))
    return text + "."


def carry_pending_text(plan: Any = None, released: str = "omniglot_5way",
                       mean: str = "omniglot_5way_mean_carry") -> str:
    """Why :func:`carry_rows` is empty: where the two runs stand in the queue."""
    from . import reproduce

    plan = plan or reproduce.load_plan()
    state = {r["unit"]: r["state"] for r in reproduce.status_rows(plan)}
    pair = [u for m in plan.of(mean) for u in (*[r for r in plan.of(released) if r.seed == m.seed], m)]
    if not pair:
        return f"Not measured: the plan has no `{mean}` run."
    return ("Not measured yet: it needs both runs finished. In the queue of paper-scale runs, "
            + " and ".join(f"the {'mean-carry' if u.experiment.name == mean else 'released-order'} run of seed "
                           f"{u.seed} is {state[u.id]}" for u in pair) + ".")


def carry_markdown(plan: Any = None, **names: str) -> str:
    """The paired comparison as a Markdown table, or :func:`carry_pending_text` (the fidelity page's include);
    ``names``: ``released=``, ``mean=`` experiments of the plan."""
    rows = carry_rows(plan, **names)
    if not rows:
        return carry_pending_text(plan, **names) + "\n"
    head = "| " + " | ".join(CARRY_COLUMNS.values()) + " |\n|" + "---|" * len(CARRY_COLUMNS) + "\n"
    summary = carry_summary(rows, released_results(plan, names.get("released", "omniglot_5way")))
    return (head + "".join("| " + " | ".join(_cell(r[k]) for k in CARRY_COLUMNS) + " |\n" for r in rows)
            + (f"\n{summary}\n" if summary else ""))


def released_results(plan: Any = None, released: str = "omniglot_5way") -> dict | None:
    """The released-order experiment's results file as written by the queue (None if absent or made by another
    config: the same check as the chapters' ``book.load_if_matching``)."""
    from . import reproduce
    from .results import ResultsMismatchError, load_results

    plan = plan or reproduce.load_plan()
    path = reproduce.results_path(plan, released)
    try:
        return load_results(path, plan.experiments[released].config, "paper") if path.exists() else None
    except ResultsMismatchError:
        return None


def report_takeaways(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's summary from the scoreboard rows: what reproduces, what is missed (with its verdict),
    what waits for the queue, chapter by chapter (:func:`verdict_class`)."""
    by: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        by.setdefault(str(r["Chapter"]), {}).setdefault(verdict_class(str(r["Verdict"])), []).append(r)

    def title(chapter: str) -> str:
        return CHAPTER_TITLES[chapter].split(":")[0]

    counts = {k: sum(len(c.get(k, [])) for c in by.values()) for k in ("reproduced", "missed", "pending", "context")}
    out = [f"**{counts['reproduced']} of the {len(rows)} claims reproduce, {counts['missed']} "
           f"{'is' if counts['missed'] == 1 else 'are'} missed**; {counts['pending']} "
           f"wait{'s' if counts['pending'] == 1 else ''} for runs of the queue"
           + (f" and {counts['context']} {'is' if counts['context'] == 1 else 'are'} measured without a verdict"
              if counts["context"] else "") + "."]
    done = [f"{title(ch)} ({len(c['reproduced'])} of {sum(map(len, c.values()))})"
            for ch, c in by.items() if c.get("reproduced")]
    if done:
        out.append("Reproduced, by chapter: " + ", ".join(done) + ".")
    out += [f"Missed: {r['Claim']}: {r['Verdict']} (paper {r['Paper']}, ours {r['Ours']})."
            for c in by.values() for r in c.get("missed", [])]
    waiting = [f"{title(ch)} ({len(c['pending'])})" for ch, c in by.items() if c.get("pending")]
    if waiting:
        out.append("Waiting for the queue (claims per chapter): " + ", ".join(waiting)
                   + "; the list under the table says where each run stands.")
    return out


def claim_box(chapter: str, rows: Sequence[Mapping[str, Any]] | None = None, note: str = "",
              as_of: str | None = None) -> str:
    """The MyST admonition a chapter opens with: the paper's claims it covers, ours, the verdicts.

    Built from :func:`scoreboard_rows` (the chapter's rows, in order); claims without a result of
    ours that share scale and verdict are listed together. ``note`` is appended as a last paragraph.
    Where the queue is quoted, a line says when its state was saved (``as_of``; default, with the
    scoreboard's own rows: ``reproduce.queue_time``).
    """
    if rows is None:
        queue, as_of = _queue_now()
        rows = scoreboard_rows(queue=queue)
    rows = [r for r in rows if r["Chapter"] == chapter]
    if not rows:
        raise ValueError(f"no scoreboard row for chapter {chapter!r}: one of {sorted(set(SCOREBOARD_SOURCES.values()))}")
    lines = [":::{admonition} The paper's claim, what we measured, the verdict", ":class: tip", ""]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}

    def scale_of(r: Mapping[str, Any]) -> str:
        return "paper scale" + r["Scale"][len("paper"):] if r["Scale"].startswith("paper") else r["Scale"]

    measured = [r for r in rows if r["Ours"] != "—"]
    # one scale and machine for every measured claim: said once, after them, not in each
    shared = len({(r["Scale"], r["Device"]) for r in measured}) == 1 and len(measured) > 1
    for r in rows:
        if r["Ours"] == "—":
            groups.setdefault((r["Scale"], r["Verdict"]), []).append(r)
            continue
        where = "" if shared else f"; {scale_of(r)}, on {r['Device']}"
        lines.append(f"- **{r['Claim']}.** Paper: {r['Paper']}. Ours: {r['Ours']}{where}. "
                     f"**Verdict: {r['Verdict']}.**")
    for (scale, v), group in groups.items():
        head = group[0]["Claim"].split(": ", 1)[0] if len(group) > 1 else ""
        same = len({r["Paper"] for r in group}) == 1
        items = [r["Claim"].split(": ", 1)[-1] if head else r["Claim"] for r in group]
        if not same:
            items = [f"{c} ({r['Paper']})" for c, r in zip(items, group)]
        claim = (f"{head}: " if head else "") + "; ".join(items)
        paper_text = f" Paper: {group[0]['Paper']}." if same else ""
        lines.append(f"- **{claim}.**{paper_text} Ours: {_none_yet(scale)}. **Verdict: {v}.**")
    if shared:
        lines += ["", f"Our numbers: {scale_of(measured[0])}, on {measured[0]['Device']}."]
    if as_of and any("queue:" in str(r["Scale"]) for r in rows):
        lines += ["", f"The queue's progress is as of {as_of}."]
    if note:
        lines += ["", note]
    lines.append(":::")
    return "\n".join(lines) + "\n"


def _none_yet(scale: str) -> str:
    """'unfinished (queue: seed 0 training: ...)' -> 'none yet; in the queue, seed 0 training: ...'."""
    for prefix in ("not run yet (queue: ", "unfinished (queue: "):
        if scale.startswith(prefix) and scale.endswith(")"):
            return "none yet; in the queue, " + scale[len(prefix):-1]
    return f"none yet ({scale})"


def html_table(rows: Sequence[Mapping[str, Any]] | Any, columns: Mapping[str, str] | None = None):
    """Rows (dicts or a DataFrame) as the HTML table a chapter shows: readable column names
    (``columns`` maps field -> heading, and picks the fields), no index, no NaN, no duplicate rows.

    Deterministic (a fixed element id), so that nbval can compare it from run to run.
    """
    import hashlib

    import pandas as pd
    from IPython.display import HTML

    f = rows.reset_index() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns:
        missing = [c for c in columns if c not in f]
        if missing:
            raise KeyError(f"html_table: no column {missing}; have {list(f.columns)}")
        f = f[list(columns)].rename(columns=dict(columns))
    f = f.astype(object).where(f.notna(), "—").drop_duplicates().map(_number_text)
    uid = "t" + hashlib.sha1("|".join(map(str, f.columns)).encode()).hexdigest()[:8]
    return HTML(f.style.hide(axis="index").set_uuid(uid).set_table_attributes('class="table"').to_html())


def _number_text(v: Any) -> Any:
    """A float as a reader wants it in a table: 621.6, 3.9, 0.1971, 12,000 (not 621.600000)."""
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return v


def run_state(name: str, doc: Mapping[str, Any] | None = None, queue: Sequence[Mapping[str, Any]] | None = None,
              as_of: str | None = None) -> str:
    """Where the paper-scale run of results file ``name`` stands, in words, for a chapter:
    'finished (...)' / 'not finished yet (queue: seed 0 training: 12,000 of 100,000; ...)' / 'not started yet
    (queue: seed 0 pending)' / 'not started (not in the queue ...)'. The queue's part ends 'as of <when>'
    (``as_of``; default, with the plan's queue: when its state was saved)."""
    if queue is None:
        queue, as_of = _queue_now()

    def dated(text: str | None) -> str | None:
        return f"{text}, as of {as_of}" if text and as_of else text

    if doc is not None and doc["provenance"].get("finished", False):
        seeds = list(doc["provenance"].get("seeds", []))
        planned = list(doc["provenance"].get("seeds_planned", seeds))
        more = dated(_queue_text(name, queue, seeds))
        done = f"{len(seeds)} of {len(planned)} seeds" if len(planned) > len(seeds) else f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        return f"finished ({done}" + (f"; {more})" if more else ")")
    more = dated(_queue_text(name, queue))
    if doc is None and more:
        waiting = all(r["state"] == "pending" for r in queue if _unit_of(name, str(r["unit"])))
        return f"{'not started yet' if waiting else 'not finished yet'} ({more})"
    if doc is not None:
        return f"not finished yet ({progress_text(doc)})"
    return "not started (not in the queue of paper-scale runs)"
