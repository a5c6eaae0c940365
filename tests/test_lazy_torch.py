"""torch loaded lazily by the command line (xaibench.cli.load_torch_lazily), in fresh interpreters:
torch is already imported in this one."""

import json
import subprocess
import sys
import textwrap


def python(code: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_every_builtin_plugin_is_built_without_loading_torch_but_the_library_sources():
    proc = python("""
        import json, sys
        from xaibench.cli import load_torch_lazily
        from xaibench.errors import ParamError
        from xaibench.params import build
        from xaibench.registry import REGISTRIES
        load_torch_lazily()
        loaded = []
        for kind, registry in REGISTRIES.items():
            for name in registry.names():
                if name in ("torchvision", "timm"):
                    continue  # a library model's name check asks its library: that loads torch
                values = {"id": "m", "arch": name} if kind == "models" else {}
                try:
                    build(registry.get(name), values)
                except ParamError:
                    pass  # checked (a required key, a data folder that is not there)
                if "torch._C" in sys.modules:
                    loaded.append(f"{kind}.{name}")
                    break
        print(json.dumps(loaded))
    """)
    assert json.loads(proc.stdout) == []


def test_the_lazy_module_loads_in_place_on_first_use_and_imports_stay_ordinary():
    python("""
        import sys
        from xaibench.cli import load_torch_lazily
        load_torch_lazily()
        import torch
        import torch as again  # an import statement reads __spec__: it does not load torch
        assert "torch._C" not in sys.modules and again is torch
        assert torch.zeros(1).item() == 0.0  # first use: loaded, in place
        assert sys.modules["torch"] is torch and "torch._C" in sys.modules
        import torch.nn.functional as F
        from torch import nn
        assert sys.modules["torch.nn"] is nn is torch.nn and F is torch.nn.functional
        assert F.relu(torch.tensor([-1.0])).item() == 0.0
    """)
    python("""
        import sys
        from xaibench.cli import load_torch_lazily
        load_torch_lazily()
        import torch.nn  # a submodule needs the package: it loads torch first, as usual
        assert "torch._C" in sys.modules and sys.modules["torch"].nn is torch.nn
    """)
