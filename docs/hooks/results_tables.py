"""Results tables generated from the committed run folders under results/.

A page asks for a table with a marker on a line of its own, ``<!-- table: NAME ARG ... -->``;
``render(markdown)`` replaces every marker with the table, so no number on a results page is
typed by hand. ``docs/hooks/mkdocs_hooks.py`` calls it when the site builds, and
``tests/test_docs.py`` calls the table functions directly. Paths in markers are relative to the
repository root. Reads the CSV files with pandas and the manifests with json; imports neither
xaibench nor mkdocs.

Tables:

- ``provenance RUN...``: where each run's numbers come from (folder, the commit that last
  changed it, device, torch threads, versions, seed, variant).
- ``seeds ROOT``: every run under ``ROOT/<variant>/``: test accuracy of each model, the phase-2
  validation accuracy per epoch of the joint models, joint_hybrid's map in the box.
- ``merged VARIANT_DIR``: ``merged/merged_leaderboard.csv`` (mean ± std over the runs) on the
  localisation metrics.
- ``ordering ROOT``: per run, POMPOM on positives of both joint maps against the best post-hoc
  method, and which parts of the xML paper's ordering hold.
- ``leaderboard RUN``: a run's leaderboard.csv on the default benchmark's metrics, with the rank
  ranges and the flag of methods not better than the best control.
- ``threads RUN_A RUN_B``: two runs of one config: test accuracy, joint maps' mass, and how many
  metric means lie inside the other run's 95% CI.
- ``claim RUN...``: runs with several training seeds (``[run] seeds``): per variant and seed, every
  model's test accuracy, joint_hybrid's map in the box (raw and thresholded mass) and the xML
  paper's ordering on POMPOM on positives as the run computed it (joint_ordering.csv), then each
  run's verdict sentence.
- ``seed_threads RUN_A RUN_B ...``: pairs of multi-seed runs of one config at 2 and at 1 torch
  thread: per variant and seed, joint_hybrid's test accuracy and its map's raw and thresholded
  mass in the box at each thread count, and whether both runs are on the same side of the targets
  (raw 0.25, thresholded 0.6).
- ``hybrid_seeds RUN ...``: runs of joint_hybrid's settings over more training seeds: per variant
  and seed, its phase-3 epochs, test accuracy, raw and thresholded mass in the box, and whether
  each reaches its target.
- ``meta RUN``: a run with ``[meta]``: per model and meta-evaluated metric, MC, Krippendorff's
  alpha, rank stability and whether the metric passes the thresholds (the run's verdict, read
  from the ``<metric>_trusted`` columns of its leaderboard).

The README is not built by mkdocs: its tables sit between a marker line and ``<!-- end table -->``,
and ``python docs/hooks/results_tables.py README.md`` rewrites them (:func:`sync`); a test checks
that the README's tables equal the committed runs'.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- table: (.+?) -->$", re.M)
JOINT_MODELS = ("joint_unsup", "joint_hybrid")
MODEL_ORDER = ("joint_hybrid", "joint_unsup", "resnet18")


def _path(run: str | Path) -> Path:
    path = Path(run)
    return path if path.is_absolute() else ROOT / path


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def commit(run: str | Path) -> str | None:
    """The short hash of the last commit that changed ``run`` (None outside a git checkout or for
    a folder git does not know)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(_path(run))], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def manifest(run: str | Path) -> dict:
    return json.loads((_path(run) / "manifest.json").read_text())


def runs(root: str | Path) -> list[Path]:
    """The run folders under ``root`` (one level of variant folders), by variant and seed."""
    found = [p.parent for p in _path(root).glob("*/*/manifest.json")]
    return sorted(found, key=lambda p: (variant(p), manifest(p)["seed"]))


def variant(run: Path) -> str:
    return str(manifest(run)["config"]["dataset"].get("variant", ""))


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def f3(value: float) -> str:
    return f"{value:.3f}"


def provenance(*run_folders: str) -> str:
    rows = []
    for run in run_folders:
        m = manifest(run)
        v = m["versions"]
        rows.append([f"`{_rel(_path(run))}`", f"`{commit(run) or 'not in git'}`",
                     f"{m['device']} ({m['device_name']}), {m['torch_threads']} torch threads",
                     f"torch {v.get('torch', '?')}, xaibench {v.get('xaibench', '?')}",
                     m["seed"], m["config"]["dataset"].get("variant", "")])
    return table(["run folder", "files committed in", "device", "versions", "seed", "variant"], rows)


def _accuracy(run: Path) -> dict[str, float]:
    models = pd.read_csv(run / "models.csv")
    return dict(zip(models["model"], models["accuracy"]))


def _phase2(run: Path, model: str) -> str:
    history = pd.read_csv(run / "training" / f"{model}.csv")
    return ", ".join(f"{a:.2f}" for a in history.loc[history["phase"] == 2, "val_acc"])


def _row(board: pd.DataFrame, model: str, method: str) -> pd.Series:
    return board[(board["model"] == model) & (board["method"] == method)].iloc[0]


def seeds(root: str) -> str:
    rows = []
    for run in runs(root):
        acc = _accuracy(run)
        board = pd.read_csv(run / "leaderboard.csv")
        hybrid = _row(board, "joint_hybrid", "joint")
        rows.append([variant(run), manifest(run)["seed"], *(f3(acc[m]) for m in ("resnet18", *JOINT_MODELS)),
                     *(_phase2(run, m) for m in JOINT_MODELS),
                     f"{f3(hybrid['relevance_mass_mean'])} / {f3(hybrid['relevance_mass_t75_mean'])}"])
    return table(["variant", "seed", "resnet18", "joint_unsup", "joint_hybrid",
                  "joint_unsup phase-2 val. acc.", "joint_hybrid phase-2 val. acc.",
                  "joint_hybrid map: mass / mass > 0.75 max"], rows)


def _pm(row: pd.Series, metric: str) -> str:
    return f"{f3(row[f'{metric}_mean'])} ± {f3(row[f'{metric}_std'])}"


def merged(variant_dir: str) -> str:
    board = pd.read_csv(_path(variant_dir) / "merged" / "merged_leaderboard.csv")
    rows = []
    for model in [m for m in MODEL_ORDER if m in set(board["model"])]:
        part = board[board["model"] == model].sort_values(["pompom_pos_mean", "method"])
        for i, (_, r) in enumerate(part.iterrows()):
            label = f"{model} ({_pm(r, 'accuracy')})" if i == 0 else ""
            method = f"**{r['method']}**" if r["method"] == "joint" else r["method"]
            rows.append([label, method, _pm(r, "pompom_pos"), _pm(r, "relevance_mass"),
                         _pm(r, "relevance_mass_t75")])
    return table(["model (test acc.)", "method", "POMPOM pos. ↓", "mass ↑", "mass > 0.75 max ↑"], rows)


def ordering_row(run: Path) -> dict:
    """POMPOM on positives: both joint maps, the best post-hoc method (any model), and which parts
    of the ordering hybrid < unsupervised < every post-hoc method hold."""
    board = pd.read_csv(run / "leaderboard.csv")
    board = board[~board["control"].astype(bool)]
    hybrid = _row(board, "joint_hybrid", "joint")["pompom_pos_mean"]
    unsup = _row(board, "joint_unsup", "joint")["pompom_pos_mean"]
    post_hoc = board[board["method"] != "joint"].sort_values("pompom_pos_mean").iloc[0]
    best = post_hoc["pompom_pos_mean"]
    return {"variant": variant(run), "seed": manifest(run)["seed"], "hybrid": hybrid, "unsup": unsup,
            "best": best, "best_name": f"{post_hoc['method']} on {post_hoc['model']}",
            "hybrid_lt_unsup": hybrid < unsup, "hybrid_lt_post_hoc": hybrid < best,
            "unsup_lt_post_hoc": unsup < best}


def ordering(root: str) -> str:
    def yes(flag: bool) -> str:
        return "**yes**" if flag else "no"

    rows = []
    for run in runs(root):
        r = ordering_row(run)
        rows.append([r["variant"], r["seed"], f3(r["hybrid"]), f3(r["unsup"]),
                     f"{f3(r['best'])} ({r['best_name']})", yes(r["hybrid_lt_unsup"]),
                     yes(r["hybrid_lt_post_hoc"]), yes(r["unsup_lt_post_hoc"]),
                     yes(r["hybrid_lt_unsup"] and r["unsup_lt_post_hoc"])])
    return table(["variant", "seed", "joint_hybrid's map", "joint_unsup's map", "best post-hoc",
                  "hybrid < unsup.", "hybrid < post-hoc", "unsup. < post-hoc", "full ordering"], rows)


def inside_ci(a: pd.DataFrame, b: pd.DataFrame, model: str) -> tuple[int, int]:
    """(rows inside, rows) for ``model``: a (method, metric) row counts when each run's mean lies
    inside the other run's 95% CI."""
    metrics = [c[:-5] for c in a.columns if c.endswith("_mean") and f"{c[:-5]}_ci_low" in a.columns]
    pair = a[a["model"] == model].merge(b[b["model"] == model], on="method", suffixes=("_a", "_b"))
    inside = total = 0
    for m in metrics:
        for _, r in pair.iterrows():
            if pd.isna(r[f"{m}_mean_a"]) or pd.isna(r[f"{m}_mean_b"]):
                continue
            va, vb = r[f"{m}_mean_a"], r[f"{m}_mean_b"]
            eps = 1e-9 * max(1.0, abs(va), abs(vb))  # as `xaibench compare`
            total += 1
            inside += bool(r[f"{m}_ci_low_b"] - eps <= va <= r[f"{m}_ci_high_b"] + eps
                           and r[f"{m}_ci_low_a"] - eps <= vb <= r[f"{m}_ci_high_a"] + eps)
    return inside, total


def threads(run_a: str, run_b: str) -> str:
    a, b = _path(run_a), _path(run_b)
    board_a, board_b = pd.read_csv(a / "leaderboard.csv"), pd.read_csv(b / "leaderboard.csv")
    acc_a, acc_b = _accuracy(a), _accuracy(b)
    ta, tb = manifest(a)["torch_threads"], manifest(b)["torch_threads"]
    rows = []
    for model in [m for m in MODEL_ORDER if m in acc_a]:
        inside, total = inside_ci(board_a, board_b, model)
        if model in JOINT_MODELS:
            mass = " / ".join(f3(_row(board, model, "joint")["relevance_mass_mean"])
                              for board in (board_a, board_b))
        else:
            mass = "-"
        rows.append([model, f"{f3(acc_a[model])} / {f3(acc_b[model])}", mass, f"{inside} of {total}"])
    return table(["model", f"test accuracy, {ta} / {tb} threads", f"joint map's mass, {ta} / {tb} threads",
                  "metric means inside the other run's 95% CI"], rows)


LEADERBOARD_METRICS = {"aopc": "AOPC", "deletion": "deletion", "insertion": "insertion", "road": "ROAD",
                       "mprt": "MPRT", "pompom_pos": "POMPOM pos.", "relevance_mass": "mass",
                       "relevance_mass_t75": "mass >0.75", "srg": "SRG", "random_logit": "Random Logit",
                       "complexity": "complexity", "max_sensitivity": "max-sens."}


def _cell(r: pd.Series, metric: str) -> str:
    """``mean #rank[-worst]``, and † where a method is not significantly better than the best
    control."""
    rank, worst = int(r[f"{metric}_rank"]), int(r[f"{metric}_rank_worst"])
    cell = f"{f3(r[f'{metric}_mean'])} #{rank}" + (f"-{worst}" if worst != rank else "")
    return cell + (" †" if r[f"{metric}_beats_controls"] is False or r[f"{metric}_beats_controls"] == "False"
                   else "")


def leaderboard(run: str) -> str:
    board = pd.read_csv(_path(run) / "leaderboard.csv")
    metrics = [m for m in LEADERBOARD_METRICS if f"{m}_mean" in board.columns]
    arrows = {m: "↑" if board[f"{m}_direction"].iloc[0] == "higher" else "↓" for m in metrics}
    ranks = ["family_rank", "mean_rank"] if "family_rank" in board.columns else ["mean_rank"]
    rows = []
    for model in board["model"].drop_duplicates():
        part = board[board["model"] == model].sort_values(ranks, kind="stable")
        for i, (_, r) in enumerate(part.iterrows()):
            method = f"*{r['method']} (control)*" if r["control"] else r["method"]
            rows.append([f"{model} ({f3(r['accuracy'])})" if i == 0 else "", method,
                         *(f"{r[k]:.2f}" for k in ranks), *(_cell(r, m) for m in metrics)])
    return table(["model (test acc.)", "method", *(k.replace("_", " ") for k in ranks),
                  *(f"{LEADERBOARD_METRICS[m]} {arrows[m]}" for m in metrics)], rows)


def _flag(value: object) -> str:
    return {"True": "yes", "False": "no"}.get(str(value), "")


def claim(*run_folders: str) -> str:
    rows, verdicts = [], []
    for run in map(_path, run_folders):
        models = pd.read_csv(run / "models.csv")
        claims = pd.read_csv(run / "joint_claim.csv", dtype={"seed": str})
        order = pd.read_csv(run / "joint_ordering.csv", dtype={"seed": str})
        names = list(dict.fromkeys(models["model"]))
        for _, o in order.iterrows():
            hybrid = claims[(claims["seed"] == o["seed"]) & (claims["model"] == "joint_hybrid")
                            & (claims["map"] == "joint")].iloc[0]
            acc = models if o["seed"] == "all" else models[models["seed"].astype(str) == o["seed"]]
            accuracy = " / ".join(f3(acc.loc[acc["model"] == m, "accuracy"].mean()) for m in names)
            best = f"{f3(o['best_post_hoc'])} ({o['best_post_hoc_method']})"
            rows.append([variant(run), o["seed"], accuracy, f3(hybrid["mass"]),
                         f3(hybrid["mass_thresholded"]), f3(o["hybrid"]), f3(o["unsupervised"]), best,
                         _flag(o["ordering_holds"])])
        verdicts.append(f"- {variant(run)}: {order['verdict'].iloc[-1]}")
    header = ["variant", "seed", "test accuracy (" + " / ".join(names) + ")", "joint_hybrid mass",
              "mass > 0.75 max", "POMPOM+ joint_hybrid", "POMPOM+ joint_unsup", "POMPOM+ best post-hoc",
              "ordering holds"]
    return table(header, rows) + "\n\n" + "\n".join(verdicts)


def _hybrid_by_seed(run: Path) -> pd.DataFrame:
    """joint_hybrid's own map per training seed: test accuracy, raw and thresholded mass."""
    claims = pd.read_csv(run / "joint_claim.csv", dtype={"seed": str})
    hybrid = (claims["model"] == "joint_hybrid") & (claims["map"] == "joint")
    mine = claims[hybrid & (claims["seed"] != "all")]
    models = pd.read_csv(run / "models.csv")
    models = models[models["model"] == "joint_hybrid"]
    acc = models.set_index(models["seed"].astype(str))["accuracy"]
    return mine.set_index("seed")[["mass", "mass_thresholded"]].assign(accuracy=acc)


# joint_hybrid's localisation targets: raw mass in the box, and mass of the map thresholded at 0.75 x max.
TARGETS = {"mass": 0.25, "mass_thresholded": 0.6}


def seed_threads(*runs: str) -> str:
    """Pairs of runs (RUN_2_THREADS RUN_1_THREAD ...) of one config with several seeds:
    joint_hybrid's test accuracy, raw and thresholded mass per seed at each thread count, and
    whether both runs are on the same side of the targets (raw 0.25, thresholded 0.6)."""
    rows = []
    for a, b in zip(runs[::2], runs[1::2]):
        two, one = _hybrid_by_seed(_path(a)), _hybrid_by_seed(_path(b))
        for seed in two.index.intersection(one.index):
            x, y = two.loc[seed], one.loc[seed]
            same = ["yes" if (x[m] >= t) == (y[m] >= t) else "no"
                    for m, t in TARGETS.items()]
            rows.append([variant(_path(a)), seed, f"{f3(x['accuracy'])} / {f3(y['accuracy'])}",
                         f"{f3(x['mass'])} / {f3(y['mass'])}",
                         f"{f3(x['mass_thresholded'])} / {f3(y['mass_thresholded'])}", *same])
    return table(["variant", "seed", "test accuracy (2 / 1 threads)", "mass in the box (2 / 1)",
                  "mass > 0.75 max (2 / 1)", "same side of 0.25 (mass)", "same side of 0.6 (> 0.75 max)"],
                 rows)


def hybrid_seeds(*runs: str) -> str:
    """joint_hybrid's own map per training seed over runs of the same model settings (the study's
    seeds and more): test accuracy, raw and thresholded mass, and whether each reaches its
    target (raw 0.25, thresholded 0.6)."""
    rows = []
    for run in map(_path, runs):
        phase3 = manifest(run)["config"]["models"]["joint_hybrid"]["epochs"][2]
        for seed, r in _hybrid_by_seed(run).iterrows():
            rows.append([variant(run), seed, phase3, f"`{run.name}`", f3(r["accuracy"]), f3(r["mass"]),
                         f3(r["mass_thresholded"]), *(_flag(r[m] >= t) for m, t in TARGETS.items())])
    return table(["variant", "seed", "phase-3 epochs", "run", "test accuracy", "mass in the box",
                  "mass > 0.75 max", "mass >= 0.25", "> 0.75 max >= 0.6"], rows)


def meta(run: str) -> str:
    figures = pd.read_csv(_path(run) / "meta.csv")
    board = pd.read_csv(_path(run) / "leaderboard.csv")
    rows = []
    for _, r in figures.iterrows():
        verdicts = board.loc[board["model"] == r["model"], f"{r['metric']}_trusted"].dropna()
        verdict = {"True": "passes", "False": "fails"}.get(str(verdicts.iloc[0]), "") if len(verdicts) else ""
        rows.append([r["model"], r["metric"], *(f3(r[c]) if pd.notna(r.get(c)) else "" for c in
                                                ("mc", "alpha", "stability")), verdict])
    return table(["model", "metric", "MC", "Krippendorff's alpha", "rank stability", "verdict"], rows)


TABLES: dict[str, Callable[..., str]] = {"provenance": provenance, "seeds": seeds, "merged": merged,
                                         "ordering": ordering, "leaderboard": leaderboard,
                                         "threads": threads, "claim": claim, "meta": meta,
                                         "seed_threads": seed_threads, "hybrid_seeds": hybrid_seeds}
END = "<!-- end table -->"
BLOCK = re.compile(r"^(<!-- table: (.+?) -->)\n.*?^" + re.escape(END) + "$", re.M | re.S)


def render(markdown: str) -> str:
    """``markdown`` with every ``<!-- table: NAME ARG ... -->`` line replaced by its table."""
    def replace(match: re.Match) -> str:
        name, *args = shlex.split(match.group(1))
        if name not in TABLES:
            raise ValueError(f"unknown results table {name!r}; known: {', '.join(TABLES)}")
        return TABLES[name](*args)

    return MARKER.sub(replace, markdown)


def sync(markdown: str) -> str:
    """``markdown`` (the README) with the table after every marker line, up to its
    ``<!-- end table -->`` line, regenerated from the runs."""
    def replace(match: re.Match) -> str:
        return f"{match.group(1)}\n{render(match.group(1))}\n{END}"

    return BLOCK.sub(replace, markdown)


if __name__ == "__main__":  # python docs/hooks/results_tables.py README.md
    import sys

    for name in sys.argv[1:]:
        path = Path(name)
        path.write_text(sync(path.read_text()))
