from importlib import metadata

import pytest

from xaibench.registry import DATASETS, METHODS, METRICS, Registry, RegistryError, description


def fake_eps(*triples):
    return lambda group: [metadata.EntryPoint(n, v, group) for n, v in triples]


def test_decorator_registers_and_gets():
    reg = Registry("method", "nogroup", entry_points=fake_eps())

    @reg.register("mine")
    class Mine:
        """My method does things."""

    assert reg.get("mine") is Mine
    assert reg.names() == ["mine"]
    assert Mine.registry_name == "mine"
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


def test_entry_point_clashing_with_decorator_fails():
    reg = Registry("method", "g", entry_points=fake_eps(("gradcam", "xaibench.methods.gradcam:GradCAM")))

    @reg.register("gradcam")
    class Impostor:
        pass

    with pytest.raises(RegistryError, match="duplicate method name 'gradcam'.*Impostor"):
        reg.get("gradcam")


def test_broken_entry_point_names_its_source():
    reg = Registry("method", "g", entry_points=fake_eps(("broken", "no_such_module_xyz:Thing")))
    with pytest.raises(RegistryError, match="cannot load method 'broken'.*no_such_module_xyz"):
        reg.get("broken")


def test_builtins_are_listed_as_entry_points_of_the_distribution():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="xaibench.methods")}
    assert eps["gradcam"] == "xaibench.methods.gradcam:GradCAM"
    assert "aopc" in METRICS.names() and "synthetic" in DATASETS.names()
    assert METHODS.get("gradcam").registry_name == "gradcam"
