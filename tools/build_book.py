"""Execute the book's notebooks and build the site (what ``make book`` and ``make reproduce`` run).

    python tools/build_book.py                       # build the site from the committed executed notebooks
    python tools/build_book.py --execute             # notebooks/*.py -> book/executed/*.ipynb, then build
    python tools/build_book.py --execute --only 04_omniglot --profile smoke
    python tools/build_book.py --execute --profile paper --retrain --device cuda --n-seeds 3   # every run, now
    python tools/build_book.py --only 04 --profile paper --retrain --device cuda --max-minutes 9   # resumable slices

Executing a notebook: ``jupytext --to ipynb notebooks/NN.py`` writes the paired (git-ignored)
``notebooks/NN.ipynb``; papermill runs it with the venv's ``python3`` kernel and the given
parameters into a staging folder, and when every notebook has run the results replace
``book/executed/NN.ipynb`` (a failed run leaves the committed notebooks untouched); run-specific metadata (timestamps, temporary paths) is removed so
that re-executing with unchanged results changes as little as possible. The site is then built
with Jupyter Book 1, warnings as errors, into ``<out>/_build/html``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "book" / "executed"
KERNEL = "python3"


def notebook_sources(only: list[str] | None = None) -> list[Path]:
    """``notebooks/NN_name.py`` in order; ``only`` selects by stem (``04_omniglot``) or number (``04``)."""
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if only:
        chosen = [p for p in sources if p.stem in only or p.stem[:2] in only]
        unknown = [o for o in only if not any(p.stem == o or p.stem[:2] == o for p in sources)]
        if unknown:
            raise SystemExit(f"build_book: no notebook {unknown}; have {', '.join(p.stem for p in sources)}")
        return chosen
    return sources


def ensure_kernel() -> None:
    """Register this interpreter as the ``python3`` kernel inside the venv (never in $HOME) if needed."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL in specs:
        return
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL], check=True)


def to_ipynb(source: Path, out_dir: Path) -> Path:
    """``jupytext --to ipynb`` into ``out_dir`` (a fresh notebook from the .py: no outputs, no kernel
    metadata), beside nothing another build could be writing at the same time."""
    target = out_dir / f".{source.stem}.source.ipynb"
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "-o", str(target), str(source)],
                   check=True, cwd=ROOT)
    return target


def strip_run_metadata(path: Path) -> None:
    """Remove timestamps, durations and temporary paths that papermill and nbclient record, and take
    the parameters cell and papermill's injected cell off the page (``remove-cell``)."""
    nb = json.loads(path.read_text())
    pm = nb.get("metadata", {}).get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path", "environment_variables",
                "exception"):
        pm.pop(key, None)
    for i, cell in enumerate(nb.get("cells", [])):
        cell["id"] = f"cell-{i:02d}"  # jupytext draws random ids: fixed ones keep diffs to real changes
        md = cell.get("metadata", {})
        md.pop("execution", None)
        md.pop("papermill", None)
        tags = md.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            # Plumbing: the page says what it shows (paper-scale or smoke) next to every table and
            # figure, so neither the defaults nor papermill's injected values appear on it.
            tags.append("remove-cell")
        if not tags:
            md.pop("tags")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def execute(source: Path, parameters: dict, out_dir: Path) -> Path:
    """Run one notebook with papermill into ``out_dir``; nothing is left there if it fails."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    ipynb = to_ipynb(source, out_dir)
    target = out_dir / f"{source.stem}.ipynb"
    tmp = out_dir / f".{source.stem}.tmp.ipynb"
    try:
        papermill.execute_notebook(str(ipynb), str(tmp), parameters=parameters, kernel_name=KERNEL,
                                   language="python", cwd=str(NOTEBOOKS), progress_bar=False)
        strip_run_metadata(tmp)
        os.replace(tmp, target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    finally:
        ipynb.unlink(missing_ok=True)
    return target


def execute_all(sources: list[Path], parameters: dict) -> None:
    """Execute into a staging folder, then replace ``book/executed/`` notebooks all at once.

    The working tree stays as it was while notebooks run (so the commit recorded in a run's
    provenance is not marked dirty by this build's own outputs), and a failure leaves every
    committed executed notebook untouched.
    """
    # a staging folder of its own: the queue re-executes a chapter when a run finishes, perhaps while
    # another build runs, and a shared folder would be emptied under the other build
    (ROOT / "_build").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="executed-staging-", dir=ROOT / "_build"))
    total = time.time()
    try:
        for source in sources:
            t = time.time()
            print(f"build_book: executing {source.relative_to(ROOT)} {parameters}", flush=True)
            execute(source, parameters, staging)
            print(f"build_book:   done in {time.time() - t:.0f} s", flush=True)
        EXECUTED.mkdir(parents=True, exist_ok=True)
        for nb in sorted(staging.glob("*.ipynb")):
            os.replace(nb, EXECUTED / nb.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"build_book: executed {len(sources)} notebooks in {time.time() - total:.0f} s -> "
          f"{EXECUTED.relative_to(ROOT)}/", flush=True)


def toc_files(root: Path = ROOT) -> list[str]:
    """Every page named in ``_toc.yml`` (without suffix), root first."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", []))
    return files


def check_toc(root: Path = ROOT) -> None:
    missing = [f for f in toc_files(root) if not any((root / f"{f}{s}").exists() for s in (".md", ".ipynb"))]
    if missing:
        raise SystemExit(f"build_book: pages of _toc.yml missing: {missing}. Run `make book` to execute the "
                         f"notebooks into book/executed/.")


GENERATED = ROOT / "book" / "_generated"


def write_scoreboard(folder: Path = GENERATED) -> Path:
    """``book/_generated/scoreboard.md``: the reproduction scoreboard from ``results/`` and the queue,
    included by the landing page (``book/intro.md``), so the site always shows the current state."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from reptile_lib import report

    rows = report.scoreboard_rows()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scoreboard.md"
    queue = report.queue_markdown()
    path.write_text(f"{report.scoreboard_summary(rows)}\n\n{report.scoreboard_markdown(rows, 'executed/')}"
                    + (f"\n{queue}" if queue else ""))
    return path


def write_carry(folder: Path = GENERATED) -> Path:
    """``book/_generated/mean_carry.md``: the batched path's mean Adam carry against the released order at
    paper scale, paired by task (or where its runs stand), included by the fidelity page."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from reptile_lib import report

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mean_carry.md"
    path.write_text(report.carry_markdown())
    return path


def build(out: Path | None = None) -> Path:
    """``jupyter-book build`` with warnings as errors, after writing the scoreboard; returns the HTML folder."""
    check_toc()
    write_scoreboard()
    write_carry()
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(ROOT),
           "-W", "--keep-going", "--all", "--builder", "html"]
    if out is not None:
        cmd += ["--path-output", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    html = (out or ROOT) / "_build" / "html"
    if not (html / "index.html").exists():
        raise SystemExit(f"build_book: {html / 'index.html'} was not written")
    return html


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--execute", action="store_true", help="execute notebooks/*.py into book/executed/ first")
    p.add_argument("--only", nargs="+", default=None, metavar="NB",
                   help="execute only these notebooks (e.g. 04_omniglot or 04); implies --execute")
    p.add_argument("--profile", choices=("paper", "smoke"), default="paper",
                   help="'paper': committed results, smoke fallback (default); 'smoke': always train tiny versions")
    p.add_argument("--retrain", action="store_true", help="retrain the paper-scale experiments now (hours) and rewrite results/")
    p.add_argument("--device", default="cpu", help="torch device for training (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--n-seeds", type=int, default=1, help="seeds per experiment when retraining (default: 1)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="when retraining, stop each experiment after this long (checkpointed, marked unfinished); "
                        "run again to resume")
    p.add_argument("--no-build", action="store_true", help="only execute, do not build the site")
    p.add_argument("--out", type=Path, default=None, help="build into OUT/_build/html (default: ./_build/html)")
    args = p.parse_args(argv)

    # The kernels and the site build import this checkout's reptile_lib, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.execute or args.only or args.retrain:
        ensure_kernel()
        # One OpenMP thread per kernel unless asked otherwise: the book's small convolutions gain
        # little from a second thread, and oversubscribed OpenMP threads (other jobs on the
        # machine) spin-wait and slow a run down several-fold.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        params = {"profile": args.profile, "device": args.device, "seed": args.seed, "retrain": args.retrain,
                  "n_seeds": args.n_seeds, "max_minutes": args.max_minutes}
        execute_all(notebook_sources(args.only), params)
    if not args.no_build:
        t = time.time()
        html = build(args.out)
        print(f"build_book: site built in {time.time() - t:.0f} s: {html / 'index.html'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
