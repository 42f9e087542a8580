"""Regenerate every number, table, caption and image that README.md and docs/*.md quote.

Run by hand (not in CI), from the repository root, with reluscope importable::

    python docs/generate.py                     # everything (about 10-20 minutes on 2 busy cores)
    python docs/generate.py --only sweep,train  # some parts; --list shows them
    python docs/generate.py --jobs 2 --seeds 30 # worker processes; seeds for the remedy comparison

Each part measures something and writes it into the markdown between generated-region markers::

    <!-- generated:NAME -->
    ...replaced on every run...
    <!-- /generated:NAME -->

and images into docs/images/. The ``machine`` region records where and when the numbers were measured (CPU model,
cores and load, numpy and its BLAS as threadpoolctl reports it, torch, date); a run rewrites it only in the files
whose regions it rewrote. A region that a part does not produce is left
alone, so ``--only`` updates just its regions. Progress goes to stdout, one line per step.

Statistics: claims about remedies and learning rates rest on many seeds; intervals are 95% Student-t intervals of
the mean (``scipy.stats.t``), for remedy differences paired by seed (every remedy starts from the same weights).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_REGION = re.compile(r"<!-- generated:([A-Za-z0-9_-]+) -->\n(.*?)<!-- /generated:\1 -->", re.DOTALL)
_OPEN = re.compile(r"<!-- generated:([A-Za-z0-9_-]+) -->")


# Pure helpers (tested in tests/test_docs.py) -----------------------------------------------------------------------
def region_names(text: str) -> list[str]:
    """Names of the generated regions opened in ``text``, in order (a name may repeat).

    Raises ValueError when a region is opened but never closed.
    """
    opened = _OPEN.findall(text)
    closed = {m.group(1) for m in _REGION.finditer(text)}
    unclosed = sorted(set(opened) - closed)
    if unclosed:
        raise ValueError(f"generated region(s) {unclosed} opened but not closed with <!-- /generated:NAME -->")
    return opened


def replace_region(text: str, name: str, content: str) -> tuple[str, int]:
    """Put ``content`` between every ``<!-- generated:name -->`` / ``<!-- /generated:name -->`` pair of ``text``.

    Returns (new text, number of regions replaced). ``content`` gets exactly one trailing newline; the markers
    stay. Text outside the regions is untouched.
    """
    body = content.rstrip("\n") + "\n"
    pattern = re.compile(
        rf"(<!-- generated:{re.escape(name)} -->\n)(.*?)(<!-- /generated:{re.escape(name)} -->)", re.DOTALL
    )
    return pattern.subn(lambda m: m.group(1) + body + m.group(3), text)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of ``values`` (scipy.stats.t); one value: (v, v, v)."""
    import numpy as np
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    m = float(a.mean())
    if a.size < 2 or float(a.std()) == 0.0:
        return m, m, m
    lo, hi = stats.t.interval(confidence, a.size - 1, loc=m, scale=stats.sem(a))
    return m, float(lo), float(hi)


def fmt_ci(ci: tuple[float, float, float], digits: int = 3, *, pct: bool = False, sign: bool = False) -> str:
    """'0.912 [0.890, 0.934]' (or percentages with ``pct``; '+' on positive numbers with ``sign``)."""
    m, lo, hi = ci
    s = "+" if sign else ""
    if pct:
        return f"{m:{s}.{digits}%} [{lo:{s}.{digits}%}, {hi:{s}.{digits}%}]"
    return f"{m:{s}.{digits}f} [{lo:{s}.{digits}f}, {hi:{s}.{digits}f}]"


def compare_word(ci: tuple[float, float, float], higher: str, lower: str, same: str) -> str:
    """``higher`` when the interval lies above 0, ``lower`` below 0, else ``same`` (no clear difference)."""
    _, lo, hi = ci
    return higher if lo > 0 else lower if hi < 0 else same


def pct_pm(mean: float | None, std: float | None) -> str:
    """'41% ± 3%' (or '41%' when the spread is 0, '-' when missing)."""
    if mean is None:
        return "-"
    return f"{mean:.0%}" if not std else f"{mean:.0%} ± {std:.0%}"


def progress(message: str) -> None:
    print(f"[{_dt.datetime.now(_dt.timezone.utc):%H:%M:%S}] {message}", flush=True)


def prose(text: str, width: int = 116) -> str:
    """Wrap each paragraph (separated by a blank line) to ``width`` columns, as the hand-written markdown is."""
    import textwrap

    return "\n\n".join(
        textwrap.fill(" ".join(par.split()), width, break_long_words=False, break_on_hyphens=False)
        for par in text.split("\n\n")
    )


def fenced(text: str, lang: str = "text") -> str:
    lines = [line.rstrip() for line in text.rstrip("\n").splitlines()]
    return f"```{lang}\n" + "\n".join(lines) + "\n```"


# Running the CLI and capturing what it prints ------------------------------------------------------------------------
def run_cli(args: list[str], *, width: int = 80, cwd: Path | None = None) -> str:
    """Run ``reluscope ARGS`` in a subprocess as a user would (not a terminal, so no colours), ``width`` columns;
    returns stdout + stderr with trailing spaces stripped. A non-zero exit code other than 1 is an error."""
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", "from reluscope.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"reluscope {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    out = proc.stdout + proc.stderr
    return "\n".join(line.rstrip() for line in out.splitlines())


def panels(text: str) -> dict[str, str]:
    """Split rich output into its panels, by title (the text after '╭─ ' up to ' ─')."""
    found: dict[str, str] = {}
    current: list[str] | None = None
    title = ""
    for line in text.splitlines():
        if line.startswith("╭─ "):
            title = line[3:].split(" ─")[0].strip()
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith("╰"):
                found[title] = "\n".join(current)
                current = None
    return found


# Parts ------------------------------------------------------------------------------------------------------------
Regions = dict[str, str]


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # not on this platform
        return "unknown"


def part_machine(args: argparse.Namespace) -> Regions:
    """Where and when: CPU model, cores, numpy + BLAS (threadpoolctl), torch, date."""
    import numpy as np
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            blas.append(
                f"{info.get('internal_api')} {info.get('version')} "
                f"({info.get('architecture', '?')} kernel, {info.get('num_threads')} threads)"
            )
    try:
        import torch

        torch_v = f"torch {torch.__version__}"
    except ImportError:
        torch_v = "no torch"
    line = (
        f"*Measured by `python docs/generate.py` on {_dt.date.today().isoformat()}: {cpu}, "
        f"{os.cpu_count()} cores (shared with other work; load average {_load()} at the start), "
        f"Python {platform.python_version()}, "
        f"numpy {np.__version__} with {', '.join(blas) or 'no BLAS found by threadpoolctl'}, {torch_v}.*"
    )
    return {"machine": prose(line)}


def part_train(args: argparse.Namespace) -> Regions:
    """README: what `reluscope train` prints with its defaults."""
    out = run_cli(["train"], width=80)
    return {"train-output": fenced("$ reluscope train\n" + out)}


def part_explain(args: argparse.Namespace) -> Regions:
    """README and docs/explain.md: excerpts of `reluscope explain` (panels picked by title)."""
    from reluscope.explain import explain

    wide = panels(run_cli(["explain"], width=96))
    narrow = panels(run_cli(["explain"], width=80))
    want = ["forward 1. hidden pre-activations", "backward 5. gradient at the pre-activations (the gate)"]
    missing = [t for t in want if t not in wide]
    if missing:
        raise RuntimeError(f"explain output has no panel {missing}; panels are {list(wide)}")
    tail = [t for t in wide if t.startswith(("the relu gate", "gradient check", "one SGD step"))]
    excerpt = "$ reluscope explain\n" + "\n…\n".join(wide[t] for t in [*want, *tail])
    ex = explain(hidden=4, seed=0)
    dead = ex.gate.dead_units
    z1 = ex.step("z1").value
    fired = [[j for j in range(z1.shape[0]) if z1[j, u] > 0] for u in range(z1.shape[1])]
    partly = [
        f"unit {u} fires on sample{'s' if len(f) > 1 else ''} {', '.join(map(str, f))} only"
        for u, f in enumerate(fired)
        if f and len(f) < z1.shape[0]
    ]
    units = ", ".join(map(str, dead))
    sentence = (
        f"Seed 0 is instructive: unit{'s' if len(dead) != 1 else ''} {units} fire{'' if len(dead) != 1 else 's'} "
        "on neither sample (dead for this batch — their incoming weights get exactly zero gradient and do not "
        "move in the SGD step)" + (f" and {'; '.join(partly)}." if partly else ".")
        if dead
        else "With seed 0 every unit fires on at least one sample."
    )
    return {
        "explain-excerpt": fenced(excerpt),
        "explain-readme": fenced(narrow[want[1]]),
        "explain-seed0": prose(sentence),
    }


def _sweep(args: argparse.Namespace, config: Any, name: str) -> tuple[Any, float]:
    from reluscope.experiments import run_sweep

    out = Path(tempfile.mkdtemp(prefix=f"reluscope-docs-{name}-"))
    t0 = time.perf_counter()

    def tick(cell: dict[str, Any], done: int, total: int) -> None:
        cfg = cell["config"]
        progress(f"  {name}: {done}/{total} {cfg['activation']} lr {cfg['lr']:g} seed {cfg['seed']} {cell['status']}")

    result = run_sweep(config, out, jobs=args.jobs, progress=tick)
    return result, time.perf_counter() - t0


def part_sweep(args: argparse.Namespace) -> Regions:
    """README/docs/experiments.md: the default `reluscope sweep` table, its two images, the heat-map caption."""
    from reluscope.experiments import SweepConfig
    from reluscope.report import save_plots, sweep_plots
    from reluscope.report.build import pick_dying_cell

    config = SweepConfig()
    result, seconds = _sweep(args, config, "sweep")
    plots = sweep_plots(result.cells, n_classes=result.n_classes)
    IMAGES.mkdir(exist_ok=True)
    save_plots({k: plots[k] for k in ("dead_vs_lr", "fire_rate_heatmap") if k in plots}, IMAGES)
    progress(f"  wrote {IMAGES}/dead_vs_lr.png and fire_rate_heatmap.png")

    by = {(r["activation"], r["lr"]): r for r in result.summary}
    lrs = list(config.lrs)

    def cell(act: str, lr: float, key: str) -> str:
        r = by[(act, lr)]
        text = pct_pm(r[f"{key}_mean"], r[f"{key}_std"]) if key != "train_accuracy" else pct_pm(r[f"{key}_mean"], 0)
        if key == "dead_fraction" and r["n_diverged"]:
            text += f" ({r['n_diverged']}/{r['n']} diverged)"
        return text

    rows = [
        ("ReLU: dead", "relu", "dead_fraction"),
        ("ReLU: train acc", "relu", "train_accuracy"),
        ("leaky: never fired", "leaky", "dead_fraction"),
        ("leaky: no gradient", "leaky", "no_gradient_fraction"),
        ("leaky: train acc", "leaky", "train_accuracy"),
    ]
    table = [[label, *(cell(act, lr, key) for lr in lrs)] for label, act, key in rows]
    header = ["learning rate", *(f"{lr:g}" for lr in lrs)]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in [header]]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in table]
    n_seeds = len(config.seeds)
    lines.append("")
    lines.append(
        f"(mean ± std over {n_seeds} seeds, {', '.join(map(str, config.seeds))}; 33% is chance for 3 classes. "
        "At lr 3 the spread is large and the numbers change across CPUs: see the 20-seed interval below.)"
    )

    relu_rows = [r for r in result.rows if r["activation"] == "relu"]
    leaky_rows = [r for r in result.rows if r["activation"] == "leaky"]
    revived_relu = sum(r["n_revived"] or 0 for r in relu_rows)
    revived_leaky = sum(r["n_revived"] or 0 for r in leaky_rows)
    high = [by[("leaky", lr)]["train_accuracy_mean"] for lr in lrs if lr >= 10]
    revival = (
        "A unit is **dead** when it fires (pre-activation > 0) on no training sample — the count `reluscope diagnose` "
        "reports. A dead ReLU unit also passes no gradient, so the loss never moves its weights again: "
        f"across all {len(relu_rows)} ReLU runs, {revived_relu} units came back. A leaky ReLU unit that never fires "
        "still passes 0.01 × the gradient, so it is never *stuck* (right panel: 0% by construction): in the "
        f"{len(leaky_rows)} leaky runs {revived_leaky} units went silent and fired again later. Leaky ReLU removes "
        "stuck units, not the damage of a too-large step: at lr ≥ 10 most of its units are pushed below zero just "
        f"the same and its mean training accuracy is {min(high):.0%}–{max(high):.0%} (chance: 33%)."
    )

    dying = pick_dying_cell(result.cells)
    if dying is None:
        caption = "(no run of this sweep lost units on this machine)"
    else:
        cfg, layer = dying["config"], dying["layers"]["hidden1"]
        units = layer["units"]
        dead_n = round(layer["dead_fraction"] * units)
        came_back = "and never return" if not layer["n_revived"] else f"({layer['n_revived']} came back)"
        caption = (
            "The heat map shows one run dying: each row is a hidden unit, each column a scan of the training set "
            f"every {cfg['track_every']} epochs, the colour is the fraction of samples the unit fired on, and black "
            "means it fired on none. "
            f"Units die one by one {came_back} ({'ReLU' if cfg['activation'] == 'relu' else cfg['activation']}, "
            f"lr {cfg['lr']:g}, seed {cfg['seed']}, the run of the sweep whose dead fraction is closest to one half: "
            f"{dead_n} of {units} dead after {cfg['epochs']} epochs, {dying['train_accuracy']:.1%} training "
            "accuracy)."
        )
    timing = (
        "A too-large learning rate kills ReLU units. One command trains the CS231n 2-layer net on the spiral "
        f"({config.hidden[0]} hidden units, He init, reg {config.reg:g}, full-batch SGD, {config.epochs} epochs, "
        f"{config.val_fraction:.0%} of the points held out) at {len(config.lrs)} learning rates, with "
        f"ReLU and leaky ReLU and {n_seeds} seeds each: {config.n_cells} runs, about {seconds:.0f} s with "
        f"`--jobs {args.jobs}` on the machine named below."
    )
    return {
        "sweep-table": "\n".join(lines),
        "sweep-revival": prose(revival),
        "heatmap-caption": prose(caption),
        "sweep-timing": prose(timing),
    }


def part_lr3(args: argparse.Namespace) -> Regions:
    """The learning-rate claim at lr 3 on many seeds: dead fraction and accuracy with 95% intervals."""
    from reluscope.experiments import SweepConfig

    seeds = tuple(range(args.lr3_seeds))
    config = SweepConfig(lrs=(3.0,), seeds=seeds)
    result, _ = _sweep(args, config, "lr3")
    parts = []
    for act, what in (("relu", "dead"), ("leaky", "never fired")):
        rows = [r for r in result.rows if r["activation"] == act]
        dead = [r["dead_fraction"] for r in rows]
        acc = [r["train_accuracy"] for r in rows]
        parts.append(
            f"{'ReLU' if act == 'relu' else 'leaky ReLU'}: {what} {fmt_ci(mean_ci(dead), 0, pct=True)} "
            f"(single runs {min(dead):.0%}–{max(dead):.0%}), training accuracy {fmt_ci(mean_ci(acc), 0, pct=True)}"
        )
    text = (
        f"At lr 3 over {len(seeds)} seeds ({seeds[0]}–{seeds[-1]}), mean [95% Student-t interval of the mean]: "
        + "; ".join(parts)
        + "."
    )
    return {"sweep-lr3": prose(text)}


def part_remedies(args: argparse.Namespace) -> Regions:
    """docs/remedies.md: no remedy vs ReDo vs leaky, ``--seeds`` seeds, paired 95% intervals."""
    from dataclasses import replace

    import numpy as np
    from joblib import Parallel, delayed

    from reluscope.data import spiral
    from reluscope.experiments import COMPARISON_CONFIG, RemedyComparison, compare_remedies, run_remedy
    from reluscope.runs import REMEDIES

    X, y = spiral(100, 3, seed=0)
    seeds = list(range(args.seeds))
    probe = compare_remedies(X, y, remedies=["none"], seeds=[0], config=replace(COMPARISON_CONFIG, epochs=1))
    cfg = dict(probe.config)  # the defaults, as compare_remedies records them
    config = replace(COMPARISON_CONFIG, epochs=2000, redo_until=1000)
    todo = [(remedy, s) for s in seeds for remedy in REMEDIES]
    progress(f"  remedies: {len(todo)} runs ({len(seeds)} seeds x {', '.join(REMEDIES)}), {args.jobs} jobs")
    runs = []
    for i, run in enumerate(
        Parallel(n_jobs=args.jobs, return_as="generator")(
            delayed(run_remedy)(r, X, y, replace(config, seed=s)) for r, s in todo
        )
    ):
        runs.append(run)
        if (i + 1) % 10 == 0 or i + 1 == len(todo):
            progress(f"  remedies: {i + 1}/{len(todo)}")
    comp = RemedyComparison(config={**cfg, "seeds": seeds, "epochs": 2000, "redo_until": 1000}, runs=runs)
    by = {(r.remedy, r.seed): r for r in comp.runs}

    def values(remedy: str, key: str) -> list[float]:
        return [float(getattr(by[(remedy, s)], key)) for s in seeds]

    def diff(remedy: str, key: str) -> tuple[float, float, float]:
        return mean_ci(np.subtract(values(remedy, key), values("none", key)))

    lines = [
        "| remedy | train accuracy | dead (never fired) | dead by gradient | units recycled | diverged |",
        "|--------|----------------|--------------------|------------------|----------------|----------|",
    ]
    for remedy in REMEDIES:
        rec = np.mean(values(remedy, "recycled")) if remedy == "redo" else None
        lines.append(
            f"| {remedy} | {fmt_ci(mean_ci(values(remedy, 'train_accuracy')))} "
            f"| {fmt_ci(mean_ci(values(remedy, 'dead_fraction')))} "
            f"| {fmt_ci(mean_ci(values(remedy, 'stuck_fraction')))} "
            f"| {'–' if rec is None else f'{rec:.1f}'} | {sum(by[(remedy, s)].diverged for s in seeds)}/{len(seeds)} |"
        )
    acc_redo, dead_redo = diff("redo", "train_accuracy"), diff("redo", "dead_fraction")
    acc_leaky = diff("leaky", "train_accuracy")
    acc_none = values("none", "train_accuracy")
    redo_acc_word = compare_word(
        acc_redo,
        "ReDo ends with a **higher** training accuracy than no remedy",
        "ReDo ends with a **lower** training accuracy than no remedy",
        "ReDo's training accuracy is **not clearly different** from no remedy's (the interval contains 0)",
    )
    redo_dead_word = compare_word(
        dead_redo,
        "it leaves **more** units dead",
        "it leaves **fewer** units dead at the end",
        "its dead fraction is not clearly different",
    )
    leaky_word = compare_word(
        acc_leaky,
        "higher than no remedy",
        "lower than no remedy",
        "not clearly different from no remedy",
    )
    leaky_fired = mean_ci(values("leaky", "dead_fraction"))
    verdict = (
        f"Differences to no remedy, paired by seed (the same initial weights), mean [95% t interval] over "
        f"{len(seeds)} seeds: ReDo − none, training accuracy {fmt_ci(acc_redo, sign=True)}, dead fraction "
        f"{fmt_ci(dead_redo, sign=True)}; leaky − none, training accuracy {fmt_ci(acc_leaky, sign=True)}.\n\n"
        f"On the machine below, at this step size, {redo_acc_word}, and {redo_dead_word}. "
        f"Leaky ReLU's training accuracy is {leaky_word}; it has no unit that is dead by gradient, but "
        f"{leaky_fired[0]:.0%} of its units still never fire: the step is too large for both activations. "
        f"One run's final accuracy swings between {min(acc_none):.2f} and {max(acc_none):.2f} with the seed (no "
        "remedy), and one float rounding changes which units die, so these numbers vary across CPUs and BLAS "
        "kernels: compare means over many seeds, never single runs."
    )
    setup = (
        f"`reluscope.experiments.compare_remedies()` settings — spiral (300 points, 3 classes), 2-{cfg['hidden'][0]}-3 "
        f"net with CS231n's `{cfg['init_std']}·randn` init, reg {cfg['reg']:g}, full-batch SGD, 2000 steps at step "
        f"size {cfg['lr']:g}, ReDo with `tau={cfg['redo_tau']:g}` every {cfg['redo_every']} steps during the first "
        f"1000; seeds 0–{len(seeds) - 1}, mean [95% Student-t interval of the mean]:"
    )
    return {"remedies-setup": prose(setup), "remedies-table": "\n".join(lines), "remedies-verdict": prose(verdict)}


def part_lrcheck(args: argparse.Namespace) -> Regions:
    """docs/remedies.md: what `reluscope lr-check --init normal` prints."""
    out = run_cli(["lr-check", "--init", "normal"], width=100)
    return {"lr-check": fenced("$ reluscope lr-check --init normal\n" + out)}


def part_torch(args: argparse.Namespace) -> Regions:
    """docs/torch.md: the monitor/scan cost table printed by benchmarks/bench_torch.py."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RuntimeError("part 'torch' needs PyTorch: pip install 'reluscope[torch]'") from None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_torch.py")]
    progress(f"  torch: {' '.join(cmd[1:])}")
    lines = []
    load_before = _load()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            progress(f"  torch: {line.rstrip()}")
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/bench_torch.py exited {proc.returncode}")
    lines.append(f"(load average {load_before} before, {_load()} after, on {os.cpu_count()} cores)\n")
    return {"torch-costs": fenced("$ python benchmarks/bench_torch.py\n" + "".join(lines))}


def _torch_redo_run(kind: str, opt_name: str, lr: float, seed: int, redo_on: bool) -> tuple[float, float]:
    """One run of the PyTorch ReDo comparison (the setting of tests/test_torch_redo.py): (dead fraction, accuracy)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from reluscope.data import digits, spiral
    from reluscope.torch import ReDoSchedule, monitor, scan

    torch.set_num_threads(1)  # tiny models: one thread is fastest
    if kind == "mlp":
        Xn, yn = spiral(100, 3, seed=0)
        X, y = torch.from_numpy(Xn).float(), torch.from_numpy(yn)
        steps, every, until = 300, 25, 250
    else:
        Xn, yn = digits()
        X, y = torch.from_numpy(Xn[:400]).float().reshape(-1, 1, 8, 8), torch.from_numpy(yn[:400])
        steps, every, until = 200, 20, 160
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp":
            model: nn.Module = nn.Sequential(
                nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Dropout(0.1),
                nn.Linear(64, 3),
            )  # fmt: skip
        else:
            model = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
            )  # fmt: skip
        opt: torch.optim.Optimizer = (
            torch.optim.Adam(model.parameters(), lr=lr)
            if opt_name == "adam"
            else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        )
        g = torch.Generator().manual_seed(seed)
        with monitor(model) as m:
            sched = ReDoSchedule(model, opt, m, every=every, tau=0.0, seed=seed)
            model.train()
            for step in range(1, steps + 1):
                idx = torch.randint(0, len(X), (32,), generator=g)
                opt.zero_grad()
                F.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
                if redo_on and step <= until:
                    sched.step()
        stats = scan(model, [X])
        model.eval()
        with torch.no_grad():
            acc = (model(X).argmax(1) == y).double().mean().item()
    total = sum(stats.n_units(n) for n in stats.names)
    return sum(int(stats.dead_mask(n).sum()) for n in stats.names) / total, acc


def _torch_redo_task(*task: Any) -> tuple[tuple[Any, ...], tuple[float, float]]:
    return task, _torch_redo_run(*task)


def part_torch_redo(args: argparse.Namespace) -> Regions:
    """docs/remedies.md: ReDo on PyTorch models (an MLP and a CNN, Adam and SGD momentum), paired 95% intervals."""
    import numpy as np
    from joblib import Parallel, delayed

    settings = [
        ("mlp", "adam", 0.05, "MLP 2-64-64-3, spiral, 300 steps, ReDo every 25 until step 250", "Adam, lr 0.05"),
        ("mlp", "momentum", 0.5, "", "SGD momentum 0.9, lr 0.5"),
        ("cnn", "adam", 0.2, "CNN (conv-BN-ReLU)×2 → pool → Linear, 400 digits, 200 steps, ReDo every 20 until 160",
         "Adam, lr 0.2"),
        ("cnn", "momentum", 0.3, "", "SGD momentum 0.9, lr 0.3"),
    ]  # fmt: skip
    seeds = list(range(args.torch_seeds))
    todo = [(k, o, lr, s, r) for k, o, lr, *_ in settings for s in seeds for r in (False, True)]
    progress(f"  torch-redo: {len(todo)} runs ({len(settings)} settings x {len(seeds)} seeds x none/ReDo)")
    results = {}
    for i, (key, res) in enumerate(
        Parallel(n_jobs=args.jobs, return_as="generator")(delayed(_torch_redo_task)(*task) for task in todo)
    ):
        results[key] = res
        if (i + 1) % 20 == 0 or i + 1 == len(todo):
            progress(f"  torch-redo: {i + 1}/{len(todo)}")
    lines = [
        "| model | optimizer | dead: none | dead: ReDo − none | accuracy: none | accuracy: ReDo − none |",
        "|-------|-----------|------------|-------------------|----------------|-----------------------|",
    ]
    for kind, opt, lr, model_text, opt_text in settings:
        none = np.array([results[(kind, opt, lr, s, False)] for s in seeds])
        redo = np.array([results[(kind, opt, lr, s, True)] for s in seeds])
        cells = [
            fmt_ci(mean_ci(none[:, 0])),
            fmt_ci(mean_ci(redo[:, 0] - none[:, 0]), sign=True),
            fmt_ci(mean_ci(none[:, 1])),
            fmt_ci(mean_ci(redo[:, 1] - none[:, 1]), sign=True),
        ]
        lines.append(f"| {model_text} | {opt_text} | " + " | ".join(cells) + " |")
    setup = (
        f"The same on PyTorch models (the setting of `tests/test_torch_redo.py`, seeds 0–{len(seeds) - 1}, "
        "minibatches of 32, `ReDoSchedule` with `tau=0` from a `monitor`; dead fraction of all hidden units over "
        "the training data, `reluscope.torch.scan` in eval mode; mean [95% Student-t interval], differences paired "
        "by seed):"
    )
    return {"torch-redo-setup": prose(setup), "torch-redo-table": "\n".join(lines)}


def part_continual(args: argparse.Namespace) -> Regions:
    """docs/continual.md: `reluscope continual` with its defaults (resumable, in runs/continual-docs), its five
    figures and a table of the first, middle and last task blocks with 95% intervals."""
    from reluscope.continual import ContinualConfig, run_continual
    from reluscope.report.continual import write_continual_images

    out = ROOT / "runs" / "continual-docs"  # resumable: an interrupted generator loses only the cells in flight
    t0 = time.perf_counter()
    result = run_continual(
        ContinualConfig(),
        out,
        jobs=args.jobs,
        progress=lambda cell, done, total: progress(f"  continual: {done}/{total} {cell.method} seed {cell.seed}"),
        command=f"reluscope continual --jobs {args.jobs} --out runs/continual-docs",
    )
    seconds = time.perf_counter() - t0
    write_continual_images(out, IMAGES)
    rows = [r for r in result.summary if r["first_task"] in _first_middle_last(result.summary)]
    lines = [
        "| method | tasks | accuracy on the new task | dead units | τ-dormant units | effective rank |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['tasks']} | {_block_ci(r, 'online_accuracy')}% | {_block_ci(r, 'dead_fraction')}% | "
            f"{_block_ci(r, 'dormant_fraction')}% | {_block_ci(r, 'effective_rank', 1.0)} |"
        )
    n_seeds = max(r["n_seeds"] for r in rows)
    caption = (
        f"Mean over {n_seeds} seeds of each seed's average over the block, with its 95% Student-t interval "
        f"(`reluscope continual --jobs {args.jobs}`, {seconds:.0f} s for the cells trained in this run, on the "
        "machine named below; finished cells are reused)."
    )
    return {"continual-table": "\n".join(lines) + "\n\n" + prose(caption)}


def _block_ci(row: dict[str, Any], metric: str, scale: float = 100.0) -> str:
    """'65.8 [64.6, 66.9]': a summary row's mean and 95% interval of ``metric``, times ``scale``."""
    if row[metric] is None:
        return "-"
    return f"{row[metric] * scale:.1f} [{row[metric + '_lo'] * scale:.1f}, {row[metric + '_hi'] * scale:.1f}]"


def _first_middle_last(summary: Sequence[dict[str, Any]]) -> set[int]:
    firsts = sorted({int(r["first_task"]) for r in summary})
    return {firsts[0], firsts[len(firsts) // 2], firsts[-1]}


PARTS: dict[str, tuple[Callable[[argparse.Namespace], Regions], tuple[str, ...]]] = {
    "machine": (part_machine, ("machine",)),
    "train": (part_train, ("train-output",)),
    "explain": (part_explain, ("explain-excerpt", "explain-readme", "explain-seed0")),
    "sweep": (part_sweep, ("sweep-table", "sweep-revival", "heatmap-caption", "sweep-timing")),
    "lr3": (part_lr3, ("sweep-lr3",)),
    "remedies": (part_remedies, ("remedies-setup", "remedies-table", "remedies-verdict")),
    "lrcheck": (part_lrcheck, ("lr-check",)),
    "torch": (part_torch, ("torch-costs",)),
    "torch-redo": (part_torch_redo, ("torch-redo-setup", "torch-redo-table")),
    "continual": (part_continual, ("continual-table",)),
}
"""part name -> (producer, the region names it writes). tests/test_docs.py checks every region has a producer."""


def produced_regions() -> set[str]:
    return {name for _, names in PARTS.values() for name in names}


def write_regions(regions: Regions, files: Iterable[Path] = MARKDOWN) -> dict[str, int]:
    """Replace each region in every markdown file that has it; returns region -> files updated."""
    counts = dict.fromkeys(regions, 0)
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = text
        for name, content in regions.items():
            new, n = replace_region(new, name, content)
            counts[name] += n > 0
        if new != text:
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated parts: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the parts and their regions, then exit")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the sweeps and remedies")
    parser.add_argument("--seeds", type=int, default=30, help="seeds for the remedy comparison (>= 20)")
    parser.add_argument("--torch-seeds", type=int, default=20, help="seeds for the PyTorch ReDo table (>= 20)")
    parser.add_argument("--lr3-seeds", type=int, default=20, help="seeds for the lr-3 interval (>= 20)")
    args = parser.parse_args(argv)
    if args.list:
        for name, (fn, regions) in PARTS.items():
            print(f"{name:10} {', '.join(regions):60} {(fn.__doc__ or '').splitlines()[0]}")
        return 0
    parts = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if min(args.seeds, args.lr3_seeds, args.torch_seeds) < 20:
        parser.error("claims about remedies and learning rates rest on at least 20 seeds")
    parts = [p for p in parts if p != "machine"]
    machine = part_machine(args)  # where and when, written below into the files this run updated
    progress(machine["machine"].replace("\n", " "))
    t_all = time.perf_counter()
    touched: set[Path] = set()
    for name in parts:
        fn, expected = PARTS[name]
        progress(f"{name}: start")
        t0 = time.perf_counter()
        regions = fn(args)
        if set(regions) != set(expected):
            raise RuntimeError(f"part {name} produced {sorted(regions)}, expected {sorted(expected)}")
        counts = write_regions(regions)
        touched |= {f for f in MARKDOWN if set(region_names(f.read_text(encoding="utf-8"))) & set(regions)}
        missing = [r for r, n in counts.items() if n == 0]
        note = f"; not found in any markdown file: {missing}" if missing else ""
        progress(f"{name}: done in {time.perf_counter() - t0:.0f} s, {len(regions)} regions written{note}")
    write_regions(machine, sorted(touched))  # a file's machine line names the run that wrote its numbers
    progress(f"all done in {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
