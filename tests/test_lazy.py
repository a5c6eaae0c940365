"""torch held back while configs are checked (xaibench.lazy), in fresh interpreters: torch is
already imported in this one."""

import json
import subprocess
import sys
import textwrap


def python(code: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_every_builtin_plugin_is_checked_without_torch_but_those_that_subclass_its_modules():
    proc = python("""
        import json, sys
        from xaibench import lazy
        from xaibench.plugins import ParamError, build
        from xaibench.registry import REGISTRIES
        lazy.defer()
        needs = []
        with lazy.held_back(execute=False):
            for kind, registry in REGISTRIES.items():
                for name in registry.names():
                    values = {"id": "m", "arch": name} if kind == "models" else {}
                    if name in ("torchvision", "timm"):
                        values["arch"] = f"{name}:resnet18"
                    try:
                        build(registry.get(name), values)
                    except ParamError:
                        pass  # checked (a required key, a data folder that is not there)
                    except lazy.TorchNeeded:
                        needs.append(f"{kind}.{name}")
        print(json.dumps({"needs": needs, "executed": "torch._C" in sys.modules}))
    """)
    found = json.loads(proc.stdout)
    assert not found["executed"]
    # a model source's name check asks its library (torchvision, timm): those are checked after
    # the others, with torch
    assert set(found["needs"]) == {"models.torchvision", "models.timm"}


def test_the_hold_defers_then_executes_torch_once_in_place():
    python("""
        import sys
        from xaibench import lazy
        lazy.defer()
        with lazy.held_back():
            import torch
            assert not lazy.executed()
            try:
                torch.zeros(1)
            except lazy.TorchNeeded:
                pass
            else:
                raise AssertionError("touching a deferred torch inside the hold must raise")
            try:
                import torch.nn  # a submodule needs the package: refused, nothing half-imported
            except lazy.TorchNeeded:
                pass
            assert "torch.nn" not in sys.modules
        assert lazy.executed() and sys.modules["torch"] is torch  # executed in place on exit
        import torch.nn.functional as F
        from torch import nn
        assert sys.modules["torch.nn"] is nn is torch.nn and F is torch.nn.functional
        assert F.relu(torch.tensor([-1.0])).item() == 0.0
    """)


def test_an_error_leaves_torch_unimported_and_outside_a_hold_imports_are_ordinary():
    python("""
        import sys
        from xaibench import lazy
        lazy.defer()
        try:
            with lazy.held_back():
                import torch
                raise ValueError("a config error")
        except ValueError:
            pass
        assert not lazy.executed() and "torch._C" not in sys.modules  # the error path stays fast
    """)
    python("""
        import sys
        from xaibench import lazy
        lazy.defer()
        import torch.nn  # no hold: an ordinary import
        assert lazy.executed() and "torch._C" in sys.modules
    """)
