import copy
import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from xaibench.config import ConfigError, apply_overrides, load, parse, shipped_configs
from xaibench.params import build
from xaibench.registry import DATASETS

from .datafiles import write_folder, write_imagenet_hvz, write_nih_cervix, write_oxford_pets

BASE = {
    "run": {"seed": 0},
    "dataset": {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]},
    "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
    "methods": {"gradcam": {}},
    "metrics": {"aopc": {"patch_size": 8, "steps": 4}},
}


def check(raw, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse(raw, name="t", source="t.toml")
    assert str(err.value).startswith("t.toml")
    return str(err.value)


def edit(path, value):
    raw = copy.deepcopy(BASE)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


def test_base_parses_with_defaults():
    cfg = parse(copy.deepcopy(BASE), name="t", source="t.toml")
    assert cfg.run.device == "auto" and cfg.run.batch_size == 32
    assert cfg.models[0].id == "resnet18" and cfg.models[0].epochs == 1
    assert cfg.methods[0].plugin == "gradcam"
    assert cfg.dataset.as_dict()["radius"] == [3, 6]
    assert cfg.resolved()["metrics"]["aopc"] == {"plugin": "aopc", "patch_size": 8, "steps": 4}


def test_unknown_section():
    check({**copy.deepcopy(BASE), "mehtods": {}},
          r"unknown section\(s\) mehtods; allowed sections: run, dataset")


def test_unknown_key_lists_allowed_keys():
    msg = check(edit(["metrics", "aopc", "stpes"], 3), r"\[metrics.aopc\] stpes: unknown key; allowed keys:")
    assert "patch_size" in msg and "steps" in msg


def test_unknown_run_key():
    check(edit(["run", "sede"], 3), r"\[run\] sede: unknown key; allowed keys: batch_size, bootstrap")


def test_unknown_model_key():
    check(edit(["models", "resnet18", "epoch"], 3), r"\[models.resnet18\] epoch: unknown key")


def test_wrong_type():
    check(edit(["metrics", "aopc", "steps"], "many"), r"\[metrics.aopc\] steps: expected int, got 'many'")
    check(edit(["models", "resnet18", "lr"], "fast"), r"\[models.resnet18\] lr: expected float, got 'fast'")
    check(edit(["dataset", "n_train"], 1.5), r"\[dataset\] n_train: expected int, got 1.5")
    check(edit(["models", "resnet18", "pretrained"], 1), r"pretrained: expected bool, got 1")


def test_bad_choice():
    check(edit(["metrics", "aopc", "substrate"], "pink"),
          r"substrate: must be one of 'black', 'white', 'gray', 'mean', 'blur', 'uniform'; got 'pink'")
    check(edit(["models", "resnet18", "arch"], "alexnet"),
          r"arch: unknown architecture or model source 'alexnet'; known: given, joint_resnet18, .*"
          r"resnet18, resnet50, .*vgg16 \(a source takes a name, e.g. 'torchvision:resnet50'")


def test_out_of_range():
    check(edit(["metrics", "aopc", "steps"], 0), r"\[metrics.aopc\] steps: must be in \[1, inf\], got 0")
    check(edit(["models", "resnet18", "epochs"], -1), r"epochs: must be in \[0, inf\], got -1")
    check(edit(["run", "batch_size"], 0), r"\[run\] batch_size: must be >= 1")
    check(edit(["run", "device"], "gpu"), r"\[run\] device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'")


def test_cross_checks_against_image_size():
    check(edit(["metrics", "aopc", "patch_size"], 64), r"patch_size: 64 is larger than the 32x32 images")
    check(edit(["metrics", "aopc", "steps"], 17), r"steps: 17 exceeds the 16 patches")


def test_unknown_plugin_names_list_known():
    check(edit(["dataset", "name"], "cifar"),
          r"\[dataset\] name: unknown dataset 'cifar'; known datasets: .*synthetic")
    check(edit(["methods", "nosuch"], {}),
          r"\[methods.nosuch\] unknown method 'nosuch'; known methods: .*gradcam")
    check(edit(["metrics", "m2"], {"plugin": "nope"}),
          r"\[metrics.m2\] unknown metric 'nope'; known metrics: .*aopc")


def test_missing_sections():
    raw = copy.deepcopy(BASE)
    del raw["methods"]
    check(raw, r"section \[methods\] is missing or empty")


def test_plugin_alias_and_two_instances():
    raw = edit(["metrics", "aopc_white"], {"plugin": "aopc", "substrate": "white", "steps": 2})
    cfg = parse(raw, name="t", source="t.toml")
    assert [(m.id, m.plugin) for m in cfg.metrics] == [("aopc", "aopc"), ("aopc_white", "aopc")]


def test_overrides():
    raw = apply_overrides(BASE, ["run.seed=3", "models.resnet18.lr=0.5", "run.device=cpu",
                                 "dataset.radius=[2, 4]"])
    assert raw["run"]["seed"] == 3 and raw["models"]["resnet18"]["lr"] == 0.5
    assert raw["run"]["device"] == "cpu" and raw["dataset"]["radius"] == [2, 4]
    assert BASE["run"]["seed"] == 0  # not mutated
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides(BASE, ["run.seed"])
    with pytest.raises(ConfigError, match="must start with one of run, dataset"):
        apply_overrides(BASE, ["runn.seed=1"])


def test_an_error_in_an_override_names_the_argument_not_the_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load("quick", ["metrics.aopc.steps=0"])
    assert str(err.value).startswith("--set metrics.aopc.steps=0: [metrics.aopc] steps: must be in [1, inf]")
    with pytest.raises(ConfigError, match=r"^--set methods.gradcam={layr='x'}: \[methods.gradcam\] layr"):
        load("quick", ["methods.gradcam={layr='x'}"])  # a whole table set: its keys name it
    with pytest.raises(ConfigError, match=r"^--device gpu: \[run\] device: must be"):
        load("quick", ['run.device="gpu"'], shown={'run.device="gpu"': "--device gpu"})
    bad = tmp_path / "bad.toml"
    bad.write_text(shipped_config_text("quick").replace("steps = 4", "steps = 0"))
    with pytest.raises(ConfigError, match=rf"^{bad}: \[metrics.aopc\] steps"):
        load(str(bad), ["run.seed=1", "metrics.aopc.patch_size=4"])  # the file's key: the file
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^--set run.out=.*\[run\] out: cannot write under .*not a folder"):
        load("quick", [f"run.out='{blocker}/x'"])


def test_a_layer_name_is_checked_on_the_architecture_before_any_training(tmp_path):
    """A typo in a method's layer is a config error naming the argument, the layer and valid
    names: the untrained architecture is built (milliseconds), nothing is trained."""
    expected = (r"^--set methods.gradcam.layer=net.nosuch: \[methods.gradcam\] layer: layer "
                r"'net.nosuch' not found in the model; e.g. .*net.layer4")
    with pytest.raises(ConfigError, match=expected):
        load("quick", ["methods.gradcam.layer=net.nosuch", f"run.out='{tmp_path}'"])
    assert not any(tmp_path.iterdir())  # nothing written, nothing trained
    cfg = load("quick", ["methods.gradcam.layer=net.layer3", f"run.out='{tmp_path}'"])
    assert cfg.methods[0].instance.layer == "net.layer3"


def shipped_config_text(name):
    return resources.files("xaibench.configs").joinpath(f"{name}.toml").read_text()


def shipped_raw(name):
    return tomllib.loads(resources.files("xaibench.configs").joinpath(f"{name}.toml").read_text())


FIXTURES = {"imagenet_hvz": write_imagenet_hvz, "nih_cervix": write_nih_cervix,
            "oxford_pets": write_oxford_pets, "folder": write_folder}


def test_shipped_configs_load(tmp_path, monkeypatch):
    assert {"quick", "synthetic", "synthetic_paper", "imagenet_hvz", "nih_cervix", "oxford_pets",
            "folder"} <= set(shipped_configs())
    monkeypatch.chdir(tmp_path)  # no data/ folder here: the configs' default roots are missing
    for name in shipped_configs():
        dataset = shipped_raw(name)["dataset"]["name"]
        assert dataset in DATASETS.names()
        if dataset not in FIXTURES:
            assert load(name).name == name
            continue
        with pytest.raises(ConfigError, match=rf"configs/{name}.toml: \[dataset\] root: data folder "
                                              rf"'data/{dataset}' does not exist.*--data-root"):
            load(name)
        root = tmp_path / name
        FIXTURES[dataset](root)  # a tiny dataset in the real format
        cfg = load(name, [f"dataset.root={json.dumps(str(root))}"])
        assert cfg.name == name and cfg.dataset.as_dict()["root"] == str(root)
        small = {"image_size": 32, **({"n_test": 4} if dataset == "imagenet_hvz" else {})}
        data = build(DATASETS.get(dataset), {**cfg.dataset.as_dict(), **small})
        splits = data.load(cache_dir=tmp_path / "cache", seed=0)
        assert splits.has_masks == data.has_masks == (dataset != "folder")  # folder.toml: masks "none"
        assert len(splits.train) and len(splits.val) and len(splits.test)


@pytest.mark.parametrize("name,epochs,alpha", [("imagenet_hvz", (10, 10, 100), (1.0, 0.25, 0.9)),
                                               ("nih_cervix", (30, 10, 50), (1.0, 0.25, 0.99)),
                                               ("oxford_pets", (10, 10, 100), (1.0, 0.25, 0.9)),
                                               ("synthetic_paper", (10, 10, 100), (1.0, 0.25, 0.9))])
def test_paper_scale_configs_carry_the_paper_hyperparameters(name, epochs, alpha):
    raw = shipped_raw(name)
    joint = {k: v for k, v in raw["models"].items() if v["arch"].startswith("joint_")}
    assert {v["loss"] for v in joint.values()} == {"unsupervised", "hybrid"}
    for v in joint.values():
        assert tuple(v["epochs"]) == epochs and tuple(v["alpha"]) == alpha
        assert v["beta"] == 0.9 and v["init_bias"] == 3.0 and v.get("gamma", 1.0) == 1.0
        assert v["lr_classifier"] == [0.01, 0.0, 0.01] and v["lr_explainer"] == [0.0, 0.01, 0.01]


def test_unknown_config_name_lists_choices():
    with pytest.raises(ConfigError,
                       match=r"unknown dataset or config 'nosuch'; shipped configs: .*quick.*synthetic"):
        load("nosuch")


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\nseed = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load(str(path))


def test_study_configs_share_the_study_scale():
    """The 64 px studies (configs/synthetic_seeds.toml, synthetic_meta.toml, aopc_grid.toml) keep one
    set of data and models, so that they share cells, and synthetic_seeds keeps the settings its
    committed runs were made with (README, "Does the joint explainer beat post-hoc methods?")."""
    seeds, meta = load("synthetic_seeds").resolved(), load("synthetic_meta").resolved()
    grid = load("aopc_grid").resolved()
    assert grid["dataset"] == seeds["dataset"] == meta["dataset"]
    assert grid["models"] == seeds["models"]
    assert meta["models"]["resnet18"] == seeds["models"]["resnet18"]
    assert {"gradcam", "integrated_gradients", "occlusion", "deep_taylor", "joint"} <= set(seeds["methods"])
    assert {"pompom_pos", "relevance_mass", "relevance_mass_t75"} <= set(seeds["metrics"])
    assert {"pompom_pos", "relevance_mass_t75"} <= set(load("synthetic").resolved()["metrics"])
    committed = Path(__file__).parents[1] / "results" / "synthetic_seeds" / "e6"
    for variant in ("nocolour", "colour"):
        (run,) = (committed / variant).glob("*/manifest.json")
        made = json.loads(run.read_text())["config"]
        config = load("synthetic_seeds", [f"dataset.variant=\"{variant}\""]).resolved()
        assert made["models"] == json.loads(json.dumps(config["models"]))
