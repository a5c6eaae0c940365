from importlib import metadata

import pytest

from xaibench.registry import DATASETS, METHODS, METRICS, Registry, RegistryError, description


def fake_eps(*triples):
    return lambda group: [metadata.EntryPoint(n, v, group) for n, v in triples]


def test_run_time_registration_registers_and_gets():
    reg = Registry("method", "nogroup", entry_points=fake_eps())

    @reg.register("mine")
    class Mine:
        """My method does things."""

    assert reg.get("mine") is Mine
    assert reg.names() == ["mine"]
    assert reg.names_for(Mine) == ["mine"]
    assert description(Mine) == "My method does things."


def test_duplicate_decorator_names_both_sources():
    reg = Registry("method", "nogroup", entry_points=fake_eps())

    @reg.register("dup")
    class First:
        pass

    with pytest.raises(RegistryError) as err:
        @reg.register("dup")
        class Second:
            pass
    assert "First" in str(err.value) and "Second" in str(err.value)


def test_unknown_name_lists_known():
    reg = Registry("metric", "nogroup", entry_points=fake_eps(("b", "x:y"), ("a", "x:z")))
    with pytest.raises(RegistryError, match=r"unknown metric 'c'; known metrics: a, b"):
        reg.get("c")


def test_entry_point_loaded_lazily():
    calls = []

    def eps(group):
        calls.append(group)
        return [metadata.EntryPoint("ext", "xaibench.methods.gradcam:GradCAM", group)]

    reg = Registry("method", "xaibench.methods", entry_points=eps)
    assert calls == []  # nothing read at construction
    assert "ext" in reg.names()
    from xaibench.methods.gradcam import GradCAM

    assert reg.get("ext") is GradCAM
    assert calls == ["xaibench.methods"]  # read once


def test_duplicate_entry_points_from_two_distributions_fail():
    reg = Registry("method", "g", entry_points=fake_eps(("same", "pkg_a.mod:A"), ("same", "pkg_b.mod:B")))
    with pytest.raises(RegistryError, match="duplicate method name 'same'.*pkg_a.mod:A.*pkg_b.mod:B"):
        reg.names()


def test_entry_point_clashing_with_run_time_registration_fails():
    reg = Registry("method", "g", entry_points=fake_eps(("gradcam", "xaibench.methods.gradcam:GradCAM")))

    with pytest.raises(RegistryError, match="duplicate method name 'gradcam'.*gradcam:GradCAM.*Impostor"):
        @reg.register("gradcam")
        class Impostor:
            pass
    from xaibench.methods.gradcam import GradCAM

    assert reg.register("gradcam")(GradCAM) is GradCAM  # the entry point's own class: no clash
    assert reg.get("gradcam") is GradCAM


def test_names_for_reads_entry_points_without_importing():
    reg = Registry("model", "g", entry_points=fake_eps(("a", "no_such_module_xyz:Config"),
                                                       ("b", "no_such_module_xyz:Config"),
                                                       ("c", "no_such_module_xyz:Other")))

    class Config:
        pass

    Config.__module__, Config.__qualname__ = "no_such_module_xyz", "Config"
    assert reg.names_for(Config) == ["a", "b"]


def test_broken_entry_point_names_its_source():
    reg = Registry("method", "g", entry_points=fake_eps(("broken", "no_such_module_xyz:Thing")))
    with pytest.raises(RegistryError, match="cannot load method 'broken'.*no_such_module_xyz"):
        reg.get("broken")


def test_builtins_are_listed_as_entry_points_of_the_distribution():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="xaibench.methods")}
    assert eps["gradcam"] == "xaibench.methods.gradcam:GradCAM"
    assert "aopc" in METRICS.names() and "synthetic" in DATASETS.names()
    assert METHODS.names_for(METHODS.get("gradcam")) == ["gradcam"]


def plugin_classes() -> dict[type, Registry]:
    """Every plugin class the package defines -> the registry that must resolve it: the Method,
    Metric and Dataset subclasses of every module under xaibench.methods, xaibench.metrics and
    xaibench.datasets, and the model configs (of xaibench.models.configs, xaibench.models.sources
    and the joint model), leaving out the bases other classes of the package derive from (e.g.
    CurveMetric) and the bases of library sources (:func:`source_base`)."""
    import importlib
    import pkgutil

    from xaibench import datasets as datasets_package
    from xaibench import methods, metrics
    from xaibench.models.configs import BackboneConfig
    from xaibench.models.sources import EvaluatedModel
    from xaibench.plugins import Dataset, Method, Metric
    from xaibench.registry import MODELS

    names = ["xaibench.models.configs", "xaibench.models.sources"]
    for package in (methods, metrics, datasets_package):
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    bases = {Method: METHODS, Metric: METRICS, Dataset: DATASETS, BackboneConfig: MODELS,
             EvaluatedModel: MODELS}
    found = {}
    for name in names:
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, type) and obj.__module__ == name and obj not in bases and not source_base(obj):
                found.update((obj, reg) for base, reg in bases.items() if issubclass(obj, base))
    return {cls: reg for cls, reg in found.items()
            if not any(other is not cls and issubclass(other, cls) for other in found)}


def source_base(cls: type) -> bool:
    """Whether ``cls`` is the base of a library source's plugins (e.g. QuantusMetric): its
    plugins are bound by name ("quantus:<Class>"), the base itself has none."""
    return bool(getattr(cls, "library", "")) and not getattr(cls, "library_class", "")


def unreachable(classes: dict[type, Registry]) -> list[str]:
    """The classes no registered name resolves to (or that a name resolves to something else)."""
    problems = []
    for cls, registry in classes.items():
        names = registry.names_for(cls)
        if not names or any(registry.get(n) is not cls for n in names):
            problems.append(f"{cls.__module__}:{cls.__qualname__} ({registry.group}: {names or 'no name'})")
    return problems


def test_every_plugin_module_of_the_package_is_reachable_by_its_name():
    classes = plugin_classes()
    by_name = {f"{c.__module__}:{c.__qualname__}" for c in classes}
    assert {"xaibench.methods.gradcam:GradCAM", "xaibench.metrics.aopc:AOPC",
            "xaibench.datasets.synthetic:Synthetic", "xaibench.models.configs:ModelConfig",
            "xaibench.models.sources:TimmModel", "xaibench.methods.joint.method:Joint",
            "xaibench.methods.joint.train:JointModelConfig"} <= by_name
    assert not {"xaibench.metrics.perturbation:CurveMetric", "xaibench.models.sources:LoadedModel"} & by_name
    assert len([c for c, r in classes.items() if r is METHODS]) == len(METHODS.names())
    assert unreachable(classes) == []


def test_a_plugin_without_an_entry_point_is_reported():
    class Orphan:
        pass

    reg = Registry("method", "g", entry_points=fake_eps(("gradcam", "xaibench.methods.gradcam:GradCAM")))
    from xaibench.methods.gradcam import GradCAM

    assert unreachable({GradCAM: reg}) == []
    assert unreachable({Orphan: reg}) == [f"{__name__}:{Orphan.__qualname__} (g: no name)"]


def test_trainable_architectures_are_the_names_registered_for_their_config():
    from xaibench.models.configs import ModelConfig
    from xaibench.plugins import ParamError
    from xaibench.registry import MODELS

    assert MODELS.names_for(ModelConfig) == ["resnet18", "resnet50", "vgg16"]
    with pytest.raises(ParamError, match="arch: must be one of 'resnet18', 'resnet50', 'vgg16'"):
        ModelConfig(id="m", arch="resnet34")
