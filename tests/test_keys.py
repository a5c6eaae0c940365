"""Cache keys: every declared parameter of every plugin in a small config, changed one at a time
through ``--set``, recomputes exactly the cells that depend on it, and each result equals a
fresh-cache run's; a checkpoint's settings and a third-party plugin's source are part of the key."""

import json
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import torch

from xaibench import config
from xaibench.keys import differences, digest
from xaibench.params import parameters
from xaibench.registry import DATASETS, METHODS, METRICS, MODELS
from xaibench.run.determinism import CUDA_KERNELS
from xaibench.run.distributed import World
from xaibench.run.execute import cell_status, execute
from xaibench.run.plan import describe, plan

CONFIG = """
[run]
seed = 0
device = "cpu"
batch_size = 4
bootstrap = 100
threads = 1

[dataset]
name = "synthetic"
image_size = 32
n_train = 8
n_val = 4
n_test = 8
radius = [3, 6]
n_shapes = [1, 3]

[models.resnet18]
arch = "resnet18"
epochs = 1
batch_size = 8

[methods.gradcam]

[methods.occlusion]
window = 16
stride = 16

[metrics.aopc]
patch_size = 16
steps = 2

[metrics.relevance_mass]
"""


def alternatives(hint, value) -> list:
    """Other valid-looking values of a parameter, from its type hint alone."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return [a for a in args if a != value]
    if origin in (typing.Union, types.UnionType):  # (None, when allowed, cannot be written in TOML)
        return [v for a in args if a is not type(None) for v in alternatives(a, value)]
    if hint is bool:
        return [not value]
    if hint is int:
        candidates = (1, 2) if value is None else (value + 1, value + 2, value * 2, value - 1)
        return [v for v in candidates if v != value]
    if hint is float:
        return [0.5, 0.25] if value is None else [v for v in (value * 0.5, value + 0.1, 0.5) if v != value]
    if origin is tuple and value:
        return [[first, *value[1:]] for first in alternatives(args[0], value[0])]
    return []  # strings (file paths, layer names): nothing to generate from the hint


def components(cfg: config.Config) -> list[tuple[str, type, dict]]:
    """(--set prefix, plugin class, current values) of every plugin in the config."""
    out = [("dataset", DATASETS.get(cfg.dataset.plugin), cfg.dataset.as_dict())]
    out += [(f"models.{m.id}", MODELS.get(m.arch), vars(m)) for m in cfg.models]
    out += [(f"methods.{s.id}", METHODS.get(s.plugin), s.as_dict()) for s in cfg.methods]
    out += [(f"metrics.{s.id}", METRICS.get(s.plugin), s.as_dict()) for s in cfg.metrics]
    return out


def dependents(prefix: str, names: list[str]) -> set[str]:
    """The cells a parameter under ``prefix`` determines (that component and everything below)."""
    section, _, pid = prefix.partition(".")
    if section == "dataset":
        return set(names)
    if section == "models":
        return {n for n in names if n.split("/")[0] == pid}
    if section == "methods":
        return {n for n in names if n.split("/")[1:2] == [pid]}
    return {n for n in names if n.split("/")[2:] == [pid]}


def results(p) -> dict:
    """Model accuracies and every score and curve of an executed plan."""
    res = execute(p, World(), progress=False)
    out = {m.cell.name: torch.tensor(m.trained.test_accuracy) for m in res.models}
    for s in res.scored:
        out.update({f"{s.cell.name}:{k}": v for k, v in {**s.scores, **s.curves}.items()})
    return out, cell_status(res)


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """torchvision's resnet18 weight file where torchvision looks for it (random weights), so that
    ``pretrained = true`` can run without a download."""
    from torchvision.models import ResNet18_Weights, resnet18

    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), path)
    return home


@pytest.mark.slow
def test_every_parameter_recomputes_exactly_its_cells(tmp_path, monkeypatch, fake_weights):
    monkeypatch.setenv("TORCH_HOME", str(fake_weights))
    path = tmp_path / "keys.toml"
    path.write_text(CONFIG)
    shared = tmp_path / "shared"

    def load(*overrides, out=shared):
        return config.load(str(path), [f"run.out={json.dumps(str(out))}", *overrides])

    base = plan(load())
    names = [c.name for c in base.cells]
    base_keys = {c.name: c.key for c in base.cells}
    assert set(results(base)[1]) == set(names)
    tried, skipped = [], []
    for prefix, cls, values in components(base.config):
        for key, (hint, default) in parameters(cls).items():
            if key in ("id", "arch"):  # a model's name and family, not a setting
                continue
            for value in alternatives(hint, values.get(key, default)):
                setting = f"{prefix}.{key}={json.dumps(value)}"
                try:
                    changed = plan(load(setting))
                except config.ConfigError:
                    continue  # not valid in this config: try the next value
                break
            else:
                skipped.append(f"{prefix}.{key}")
                continue
            tried.append(setting)
            moved = {c.name for c in changed.cells if c.key != base_keys[c.name]}
            assert moved == dependents(prefix, names), setting
            incremental, status = results(changed)
            assert {n for n, s in status.items() if s["computed"]} == moved, setting
            if moved == set(names):
                continue  # everything was computed afresh already
            fresh_out = tmp_path / "fresh"
            fresh, _ = results(plan(load(setting, out=fresh_out)))
            shutil.rmtree(fresh_out)
            assert incremental.keys() == fresh.keys(), setting
            for name, value in fresh.items():
                torch.testing.assert_close(incremental[name], value, rtol=0, atol=0, equal_nan=True,
                                           msg=f"{setting}: {name}")
    print(f"{len(tried)} parameters changed; no value to generate for: {', '.join(skipped)}")
    # only string-valued parameters (paths, layer names) have no value a hint can generate
    for name in skipped:
        prefix, _, key = name.rpartition(".")
        cls = next(c for p, c, _ in components(base.config) if p == prefix)
        assert str in typing.get_args(parameters(cls)[key][0]), name
    assert len(tried) >= 35


def test_run_settings_that_do_not_change_results_keep_every_cell(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(CONFIG)
    base = plan(config.load(str(path)))
    other = plan(config.load(str(path), ["run.bootstrap=200", f"run.out={json.dumps(str(tmp_path))}"]))
    assert {c.name: c.key for c in base.cells} == {c.name: c.key for c in other.cells}
    seed = plan(config.load(str(path), ["run.seed=1"]))
    assert all(a.key != b.key for a, b in zip(base.cells, seed.cells))


def test_differences_compare_records_as_their_keys_see_them():
    cached = {"model": {"settings": {"epochs": [6, 2, 8], "beta": 0.9}}}  # as read back from JSON
    now = {"model": {"settings": {"epochs": (6, 2, 8), "beta": 0.5}}}
    assert digest(cached["model"]["settings"]["epochs"]) == digest(now["model"]["settings"]["epochs"])
    assert differences(cached, now) == ["model.settings.beta: 0.9 -> 0.5"]


def test_a_cuda_run_keys_its_cells_by_its_deterministic_kernels(tmp_path, monkeypatch):
    """A cell computed on CUDA records that it used torch's deterministic kernels: results cached
    by a CUDA run without them (before they were asked for) are not reused, and CPU keys stay."""
    import xaibench.run.plan as plan_module

    path = tmp_path / "keys.toml"
    path.write_text(CONFIG)
    cpu = plan(config.load(str(path)))
    monkeypatch.setattr(plan_module, "resolve_device", lambda name: "cuda")
    cuda = plan(config.load(str(path)))
    compute = [c for c in cuda.cells if c.kind != "data"]
    assert compute and all(c.record.get("cuda_kernels") == CUDA_KERNELS for c in compute)
    assert all("cuda_kernels" not in c.record for c in cpu.cells)
    assert all(a.key != b.key for a, b in zip(cpu.cells, cuda.cells) if a.kind != "data")


# -- a checkpoint's settings ----------------------------------------------------------------------


def xaibench(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "xaibench", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_changing_the_stem_of_a_checkpoint_model_recomputes_its_cells(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(CONFIG.replace("[methods.occlusion]\nwindow = 16\nstride = 16\n", ""))
    out = tmp_path / "out"
    proc = xaibench("run", str(cfg), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (ckpt,) = (out / "synthetic" / "cache" / "models").glob("resnet18-*.pt")
    evaluated = tmp_path / "evaluate.toml"
    evaluated.write_text(cfg.read_text().replace('arch = "resnet18"',
                                                 f'arch = "resnet18"\ncheckpoint = "{ckpt}"'))
    first = xaibench("run", str(evaluated), "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    dry = xaibench("run", str(evaluated), "--out", str(out), "--set", "models.resnet18.stem='imagenet'",
                   "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "compute  model    resnet18: model.settings.stem: 'auto' -> 'imagenet'" in dry.stdout
    assert "compute  explain  resnet18/gradcam: resnet18 changed" in dry.stdout
    assert "reuse    data     data" in dry.stdout
    second = xaibench("run", str(evaluated), "--out", str(out), "--no-progress", "--set",
                      "models.resnet18.stem='imagenet'")
    assert second.returncode == 0, second.stderr
    assert "3 of 5 cells computed" in second.stdout  # explain, 2 scores (a checkpoint is read, never trained)
    fresh = xaibench("run", str(evaluated), "--out", str(tmp_path / "fresh"), "--no-progress", "--set",
                     "models.resnet18.stem='imagenet'")
    assert fresh.returncode == 0, fresh.stderr
    runs = sorted((out / "synthetic").glob("evaluate-*"), key=lambda p: p.stat().st_mtime)
    (fresh_run,) = (tmp_path / "fresh" / "synthetic").glob("evaluate-*")
    for name in ("leaderboard.csv", "scores.csv"):
        assert (runs[-1] / name).read_bytes() == (fresh_run / name).read_bytes(), name
    assert (runs[0] / "scores.csv").read_bytes() != (runs[-1] / "scores.csv").read_bytes()


# -- a third-party plugin's source ---------------------------------------------------------------

PLUGIN = '''
import torch

from xaibench.plugins import Method


class Flat(Method):
    """A third-party test method: a constant map."""

    def __init__(self, *, level: float = 1.0) -> None:
        self.level = level

    def attribute(self, model, images, targets):
        maps = torch.zeros(images.shape[0], *images.shape[2:], device=images.device)
        maps[:, :VALUE, :] = self.level
        return maps
'''


def install_plugin(site: Path, value: int, version: str) -> None:
    """A distribution ``flat-plugin`` with an entry point in xaibench.methods, in ``site``."""
    (site / "flat_plugin").mkdir(parents=True, exist_ok=True)
    (site / "flat_plugin" / "__init__.py").write_text(PLUGIN.replace("VALUE", str(value)))
    for old in site.glob("flat_plugin-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"flat_plugin-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: flat-plugin\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[xaibench.methods]\nflat = flat_plugin:Flat\n")
    (info / "top_level.txt").write_text("flat_plugin\n")


def test_editing_a_third_party_plugin_recomputes_its_cells(tmp_path):
    import os

    site = tmp_path / "site"
    install_plugin(site, value=8, version="1.0")
    env = {**os.environ, "PYTHONPATH": str(site)}
    cfg = tmp_path / "plug.toml"
    cfg.write_text(CONFIG.replace("[methods.occlusion]\nwindow = 16\nstride = 16\n", "[methods.flat]\n"))
    out = tmp_path / "out"
    first = xaibench("run", str(cfg), "--out", str(out), "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (out / "synthetic").glob("plug-*")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (flat,) = [p for p in manifest["plugins"] if p["name"] == "flat"]
    assert flat["distribution"] == "flat-plugin" and flat["version"] == "1.0" and flat["code"]
    before = (run_dir / "scores.csv").read_text()

    install_plugin(site, value=24, version="1.0")  # the source changed, the version did not
    dry = xaibench("run", str(cfg), "--out", str(out), "--dry-run", env=env)
    assert "compute  explain  resnet18/flat: method.code:" in dry.stdout, dry.stdout
    assert "reuse    explain  resnet18/gradcam" in dry.stdout
    again = xaibench("run", str(cfg), "--out", str(out), "--no-progress", env=env)
    assert again.returncode == 0, again.stderr
    assert "3 of 8 cells computed" in again.stdout  # flat's explain cell and its two score cells
    assert (run_dir / "scores.csv").read_text() != before

    install_plugin(site, value=24, version="1.1")  # a new version alone: recomputed as well
    dry = xaibench("run", str(cfg), "--out", str(out), "--dry-run", env=env)
    assert "compute  explain  resnet18/flat: method.version: '1.0' -> '1.1'" in dry.stdout, dry.stdout


def test_dry_run_lists_every_cell_and_computes_nothing(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(CONFIG)
    lines = describe(plan(config.load(str(path), [f"run.out={json.dumps(str(tmp_path / 'out'))}"])))
    assert len(lines) == 1 + 1 + 2 + 4 and all(line.startswith("compute") for line in lines)
    assert not (tmp_path / "out").exists()
