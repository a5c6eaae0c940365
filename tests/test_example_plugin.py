"""The example plugin distribution (examples/xaibench-example-plugin) runs through `xaibench run`
next to the built-ins, registered only by its entry-point metadata."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from xaibench.cli import main
from xaibench.registry import METHODS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "xaibench-example-plugin"
GROUP = "xaibench.methods"


def declared_entry_points() -> list[metadata.EntryPoint]:
    """The entry points the example's pyproject.toml declares in the methods group."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return [metadata.EntryPoint(name, value, GROUP)
            for name, value in project["entry-points"][GROUP].items()]


def forget_plugin_modules():
    for name in [m for m in sys.modules if m.split(".")[0] == "xaibench_example_plugin"]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Leave the global METHODS registry and sys.modules as they were."""
    monkeypatch.setattr(METHODS, "_plugins", dict(METHODS._plugins))
    monkeypatch.setattr(METHODS, "_sources", dict(METHODS._sources))
    forget_plugin_modules()
    yield
    forget_plugin_modules()


def use_plugin(monkeypatch, plugin_eps, import_path):
    """Make the plugin importable and add its entry points to the global METHODS registry."""
    monkeypatch.syspath_prepend(str(import_path))
    real = METHODS._entry_points_fn

    def entry_points(group):
        return [*real(group), *(plugin_eps if group == GROUP else [])]

    monkeypatch.setattr(METHODS, "_entry_points_fn", entry_points)
    monkeypatch.setattr(METHODS, "_eps", None)  # re-read on next lookup; restored afterwards


def run_quick_with(tmp_path, name):
    rc = main(["run", "quick", "--out", str(tmp_path), "--no-progress", "--device", "cpu",
               "--set", f"methods.{name}={{}}", "--set", "models.resnet18.epochs=0",
               "--set", "run.bootstrap=100"])
    assert rc == 0
    (run_dir,) = (tmp_path / "synthetic").glob("quick-*")
    return run_dir


def test_example_plugin_runs_next_to_gradcam(tmp_path, monkeypatch, capsys):
    eps = declared_entry_points()
    assert [ep.name for ep in eps] == ["gradient_norm"]
    assert "gradient_norm" not in METHODS.names()
    use_plugin(monkeypatch, eps, EXAMPLE / "src")
    assert "gradient_norm" in METHODS.names()
    cls = METHODS.get("gradient_norm")
    assert cls.__module__ == "xaibench_example_plugin.gradient_norm"

    assert main(["list", "methods"]) == 0
    assert re.search(r"^gradient_norm +Gradient norm: .*\[channels: L2 norm over channels\]$",
                     capsys.readouterr().out, re.M)

    run_dir = run_quick_with(tmp_path, "gradient_norm")
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert set(board["method"]) == {"gradcam", "gradient_norm"}
    assert board["aopc_mean"].notna().all()
    costs = pd.read_csv(run_dir / "costs.csv")
    costs = costs[costs["stage"] == "explain"].set_index("method")
    assert costs.loc["gradient_norm", "declared_passes_per_image"] == 1
    assert costs.loc["gradient_norm", "forwards_per_image"] == 1  # counted on the model
    assert costs.loc["gradcam", "forwards_per_image"] == 1
    assert (costs["seconds_per_image"] > 0).all()


def test_example_plugin_installs_with_pip(tmp_path, monkeypatch):
    """Build and install the example for real (into a folder) and read its dist-info."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (dist,) = [d for d in metadata.distributions(path=[str(target)])
               if d.metadata["Name"] == "xaibench-example-plugin"]
    eps = list(dist.entry_points.select(group=GROUP))
    assert [(ep.name, ep.value) for ep in eps] == [(ep.name, ep.value) for ep in declared_entry_points()]
    use_plugin(monkeypatch, eps, target)
    from xaibench.registry import _entry_point_source

    assert "xaibench-example-plugin" in _entry_point_source(METHODS._entry_points()["gradient_norm"])
    run_dir = run_quick_with(tmp_path / "out", "gradient_norm")
    assert "gradient_norm" in set(pd.read_csv(run_dir / "leaderboard.csv")["method"])
