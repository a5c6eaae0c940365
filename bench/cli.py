"""The ``xaibench`` command line: ``run``, ``leaderboard``, ``compare``, ``plot``, ``check``, ``list``.

torch is loaded lazily (:func:`load_torch_lazily`): ``import torch`` binds a module that is
executed on its first use, so ``list`` and every error the config check finds without using torch (names,
keys, types, ranges, an unwritable ``--out``) come in well under a second.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import sys
import threading
import types

from xaibench.errors import ConfigError, RunError
from xaibench.registry import REGISTRIES, RegistryError
from xaibench.report.figures import KINDS


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run an experiment: train, explain, score, write a leaderboard")
    run.add_argument("config", help="a shipped config name (e.g. synthetic) or a path to a .toml file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value (repeatable), e.g. --set models.resnet18.epochs=2")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides run.device)")
    run.add_argument("--seed", type=int, help="overrides run.seed")
    run.add_argument("--seeds", metavar="S,S,...", help="training seeds, e.g. 0,1,2: every trained "
                     "model is trained once per seed (overrides run.seeds)")
    run.add_argument("--out", help="output folder (overrides run.out; default ./results)")
    run.add_argument("--data-root", help="folder of the dataset's files (overrides dataset.root)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (each cell: reused from the cache or to compute, and what "
                          "changed since a cached cell of the same name) and stop")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xaibench", description=(
        "Explainability evaluation benchmark for image classifiers."))
    sub = parser.add_subparsers(dest="command", required=True)

    _run_parser(sub)

    board = sub.add_parser("leaderboard", help="merge the leaderboards of several runs (seeds, "
                           "datasets) into one table, by the statistics of a run with several seeds")
    board.add_argument("runs", nargs="+", metavar="RUN", help="run folders (results/<dataset>/<run-id>)")
    board.add_argument("--out", default="results/merged",
                       help="folder for merged_leaderboard.csv, metric_agreement.csv and its "
                            "heatmap (default: results/merged)")

    compare = sub.add_parser("compare", help="does a second run reproduce a first one? accuracies "
                             "within a tolerance, every metric mean inside the other run's CI")
    compare.add_argument("reference", metavar="RUN_A", help="a run folder (e.g. the committed reference)")
    compare.add_argument("run", metavar="RUN_B", help="a run folder of the same config (another "
                                                      "machine, thread count or device)")
    compare.add_argument("--accuracy-tolerance", type=float, default=0.05, metavar="T",
                         help="largest accepted difference of a model's test accuracy (default 0.05)")

    plot = sub.add_parser("plot", help="(re-)draw a run's plots from its files, and its report.md")
    plot.add_argument("kind", choices=["all", *KINDS],
                      help="which figure (" + "; ".join(f"{k}: {v}" for k, v in KINDS.items()) +
                           "); 'all' draws every one (tradeoff only once computed) and rewrites "
                           "report.md; 'tradeoff' recomputes forwards from the run's cache")
    plot.add_argument("run", metavar="RUN", help="a run folder (results/<dataset>/<run-id>)")

    check = sub.add_parser("check", help="run the plugin contract checks on tiny models and say what "
                           "failed (for plugin authors)")
    check.add_argument("kind", choices=["method", "metric", "model"])
    check.add_argument("name", help="a registered method or metric name, or a model architecture "
                                    "(resnet18, torchvision:resnet50, python:my_models:make, ...)")

    lst = sub.add_parser("list", help="list the registered methods, metrics or datasets")
    lst.add_argument("kind", choices=sorted(REGISTRIES))
    return parser


def _list(kind: str) -> int:
    from xaibench.listing import lines

    for line in lines(kind):
        print(line)
    return 0


def _check(args: argparse.Namespace) -> int:
    from xaibench.check.contract import report

    ok, text = report(args.kind, args.name)
    print(text)
    return 0 if ok else 1


def seeds_value(text: str) -> str:
    """``--seeds 0,1,2`` as the TOML value of ``run.seeds`` ("[0, 1, 2]"); text that is not a
    comma-separated list of integers is passed on as a string, for the config check to refuse."""
    parts = [p.strip() for p in text.split(",")]
    if all(p.lstrip("-").isdigit() for p in parts):
        return "[" + ", ".join(parts) + "]"
    return json.dumps(text)


def _run(args: argparse.Namespace) -> int:
    from xaibench import config

    overrides, shown = list(args.overrides), {}
    options = (("--device", "run.device", args.device), ("--seed", "run.seed", args.seed),
               ("--out", "run.out", args.out), ("--data-root", "dataset.root", args.data_root))
    for option, key, value in options:
        if value is not None:
            text = f"{key}={json.dumps(value)}"  # a TOML basic string, or an integer
            overrides.append(text)
            shown[text] = f"{option} {value}"  # how a problem with the value names it
    if args.seeds is not None:
        text = f"run.seeds={seeds_value(args.seeds)}"
        overrides.append(text)
        shown[text] = f"--seeds {args.seeds}"
    cfg = config.load(args.config, overrides, shown=shown)

    if args.dry_run:
        from xaibench.run.plan import describe, plan

        lines = describe(plan(cfg))
        print("\n".join(lines))
        todo = sum(line.startswith("compute") for line in lines)
        print(f"\n{todo} of {len(lines)} cells to compute, {len(lines) - todo} reused from the cache")
        return 0

    from xaibench.report.render import render
    from xaibench.run.runner import run

    result = run(cfg, progress=not args.no_progress)
    if result.leaderboard is None:  # a torchrun process other than rank 0
        return 0
    render(result.run_dir, seed=cfg.run.seed)
    board = result.leaderboard
    cols = ["model", "method", "accuracy", "family_rank",
            *(["family_rank_trusted"] if "family_rank_trusted" in board else []), "mean_rank",
            *(c for c in board.columns if c.endswith("_mean"))]
    print(board[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for model in board.loc[board["above_chance"].eq(False), "model"].unique():
        print(f"warning: model {model!r} is not above chance (its accuracy interval reaches the "
              f"majority-class rate): rankings on this model are not meaningful")
    computed = sum(c["computed"] for c in result.cells.values())
    print(f"\n{computed} of {len(result.cells)} cells computed, the others read from the cache")
    print(f"wrote {result.run_dir} (report.md, leaderboard.csv, costs.csv, plots/) in "
          f"{result.timings['total_s']:.1f} s")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xaibench.report.render import RunFolder

    runs = [RunFolder(Path(r)) for r in args.runs]  # checks every folder before any work
    names = [str(r.path) for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("the same run folder was given twice; pass each run once")
    import pandas as pd

    from xaibench.config import check_writable
    from xaibench.io import write_csv
    from xaibench.leaderboard import agreement as ag
    from xaibench.leaderboard.merge import merge_runs
    from xaibench.report import plots

    out = Path(args.out)
    check_writable(out, f"--out {args.out}")
    missing = [r.path for r in runs if r.scores is None]
    if missing:
        raise ConfigError(f"{missing[0]} has no scores.csv, which merged ranks are tested on; pass "
                          f"a complete run folder (or run its config again)")
    merged = merge_runs({n: r.board for n, r in zip(names, runs)}, {n: r.scores for n, r in zip(names, runs)},
                        seeds={n: r.seeds[0] for n, r in zip(names, runs)}, n_boot=runs[0].bootstrap,
                        seed=runs[0].seed)
    boards = pd.concat([r.board.assign(run=n) for n, r in zip(names, runs)], ignore_index=True)
    matrix, methods = ag.agreement(boards), ag.agreement_methods(boards)
    write_csv(out / "merged_leaderboard.csv", merged)
    write_csv(out / "metric_agreement.csv", matrix.reset_index(names="metric"))
    if ag.agreement_shown(matrix):
        plots.agreement_heatmap(matrix, out / "metric_agreement.png", methods=methods,
                                title=f"agreement between metrics over {len(runs)} run(s)")
    cols = ["dataset", "model", "method", "runs", "accuracy_mean", "family_rank", "mean_rank",
            "mean_rank_mean", "mean_rank_std"]
    print(merged[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if ag.agreement_shown(matrix):
        print(f"\nKendall tau between metric rankings:\n{matrix.round(3).to_string()}")
        print(f"\nnumber of methods compared per (run, model) behind each cell:\n{methods.to_string()}")
    else:
        print(f"\nmetric agreement left out: no (run, model) has {ag.MIN_AGREEMENT_METHODS} methods or "
              f"more scored on two metrics (Kendall tau from 3 methods can only be +-1/3 or +-1)")
    print(f"\nwrote {out / 'merged_leaderboard.csv'} and {out / 'metric_agreement.csv'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xaibench.report.render import RunFolder

    if not 0 <= args.accuracy_tolerance <= 1:
        raise ConfigError(f"--accuracy-tolerance must be in [0, 1], got {args.accuracy_tolerance}")
    a, b = RunFolder(Path(args.reference)), RunFolder(Path(args.run))
    from xaibench.leaderboard.merge import compare_runs

    table = compare_runs(a.board, b.board, accuracy_tolerance=args.accuracy_tolerance)
    acc, means = table[table["quantity"] == "accuracy"], table[table["quantity"] != "accuracy"]
    print(f"accuracy: {int(acc['ok'].sum())} of {len(acc)} models within {args.accuracy_tolerance:g}")
    print(f"metric means: {int(means['ok'].sum())} of {len(means)} inside the other run's "
          f"confidence interval (both ways)")
    for model, ok in means.groupby("model", sort=False)["ok"]:
        print(f"  {model}: {int(ok.sum())} of {len(ok)}")
    failed = table[~table["ok"]]
    if len(failed):
        cols = [c for c in ("model", "method", "quantity", "a", "b", "a_ci_low", "a_ci_high",
                            "b_ci_low", "b_ci_high") if c in failed]
        print(f"\nnot reproduced (a = {a.path}, b = {b.path}):")
        print(failed[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
        return 1
    print(f"{b.path} reproduces {a.path}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xaibench.report import render as report

    run = report.RunFolder(Path(args.run))
    if args.kind == "tradeoff":
        from xaibench.run.replay import replay_tradeoff

        replay_tradeoff(run.path)
    if args.kind == "all":
        path = report.render(run.path)
        print(f"wrote the plots under {run.path / 'plots'} and {path}")
        return 0
    written = report.make_plots(run, [args.kind])
    if not written:
        print(f"xaibench: nothing to draw for {args.kind!r} in {run.path} (see `xaibench plot "
              f"--help`: e.g. aopc-grid needs two AOPC metrics)", file=sys.stderr)
        return 1
    print("\n".join(f"wrote {p}" for p in written))
    return 0


COMMANDS = {"list": lambda args: _list(args.kind), "leaderboard": _leaderboard, "compare": _compare,
            "plot": _plot, "check": _check, "run": _run}


# read without loading torch: what an import statement, ``inspect`` and ``importlib`` look at
_METADATA = frozenset({"__class__", "__spec__", "__name__", "__file__", "__loader__", "__package__",
                       "__cached__", "__dict__"})


class _LazyModule(types.ModuleType):
    """A module that is executed on first use of any attribute but its metadata (unlike the
    standard library's ``importlib.util.LazyLoader``, whose module loads when the next ``import``
    statement reads its ``__spec__``)."""

    def __getattribute__(self, attr: str) -> object:
        if attr in _METADATA:
            return object.__getattribute__(self, attr)
        with _LOCK:
            if type(self) is _LazyModule:  # not executed by another thread meanwhile
                self.__class__ = types.ModuleType
                self.__spec__.loader.exec_module(self)
        return getattr(self, attr)


_LOCK = threading.RLock()


def load_torch_lazily() -> None:
    """From now on ``import torch`` binds a module that is executed on its first use, so a
    command that never uses torch (``list``, a config error) never loads it (about 2 s).
    Nothing happens when torch is imported already."""
    if "torch" in sys.modules or (spec := importlib.util.find_spec("torch")) is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _LazyModule
    sys.modules["torch"] = module


def main(argv: list[str] | None = None) -> int:
    load_torch_lazily()
    args = _parser().parse_args(argv)
    try:
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader gone early shows here, not as an error at exit
        return rc
    except (ConfigError, RegistryError, RunError) as exc:
        print(f"xaibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nxaibench: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`xaibench list methods | head -3`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # as a process killed by SIGPIPE
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # atomic writes leave no partial file; the cells finished before are in the cache
        where = exc.filename or getattr(args, "out", None) or "the output folder"
        print(f"xaibench: error: no space left on the device (writing {where}); free some space "
              "or give --out a folder on another disk, then run the same command again: the "
              "finished cells are kept", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
