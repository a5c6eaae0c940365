"""The ``xaibench`` command line: ``run``, ``list``.

Imports stay light until a command needs torch, so bad input fails in well under two seconds.
"""

from __future__ import annotations

import argparse
import json
import sys

from xaibench.plugins import DataError
from xaibench.registry import REGISTRIES, RegistryError, description


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xaibench", description=(
        "Explainability evaluation benchmark for image classifiers."))
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment: train, explain, score, write a leaderboard")
    run.add_argument("config", help="a shipped config name (e.g. synthetic) or a path to a .toml file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value (repeatable), e.g. --set models.resnet18.epochs=2")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides run.device)")
    run.add_argument("--seed", type=int, help="overrides run.seed")
    run.add_argument("--out", help="output folder (overrides run.out; default ./results)")
    run.add_argument("--data-root", help="folder of the dataset's files (overrides dataset.root)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    lst = sub.add_parser("list", help="list the registered methods, metrics or datasets")
    lst.add_argument("kind", choices=sorted(REGISTRIES))
    return parser


def _list(kind: str) -> int:
    registry = REGISTRIES[kind]
    items = registry.items()
    width = max((len(name) for name, _ in items), default=0)
    for name, plugin in items:
        line = f"{name:<{width}}  {description(plugin)}"
        reduction = getattr(plugin, "reduction", None)
        if kind == "methods" and reduction:
            line += f" [channels: {reduction}]"
        if kind == "metrics":
            line += f" [{'higher' if plugin.higher_is_better else 'lower'} is better"
            line += ", needs masks]" if plugin.requires_masks else "]"
        print(line)
    return 0


def _run(args: argparse.Namespace) -> int:
    from xaibench import config

    overrides = list(args.overrides)
    for key, value in (("device", args.device), ("seed", args.seed), ("out", args.out)):
        if value is not None:
            overrides.append(f"run.{key}={value!r}" if isinstance(value, str) else f"run.{key}={value}")
    if args.data_root is not None:
        overrides.append(f"dataset.root={json.dumps(args.data_root)}")  # a TOML basic string
    cfg = config.load(args.config, overrides)

    from xaibench.runner import run

    result = run(cfg, progress=not args.no_progress)
    print(result.leaderboard.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwrote {result.run_dir} in {result.timings['total_s']:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from xaibench.config import ConfigError

    try:
        if args.command == "list":
            return _list(args.kind)
        return _run(args)
    except (ConfigError, RegistryError, DataError) as exc:
        print(f"xaibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nxaibench: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
