import subprocess
import sys


def test_installed_files_live_under_xaibench():
    out = subprocess.run([sys.executable, "-m", "pip", "show", "-f", "xaibench"],
                         capture_output=True, text=True, check=True).stdout
    files = [line.strip() for line in out.split("Files:", 1)[1].splitlines() if line.strip()]
    package = [f for f in files if ".dist-info/" not in f and not f.startswith("../")]
    assert package, out
    strays = [f for f in package if not f.startswith("xaibench/")]
    assert not strays, strays
    for sub in ("methods", "metrics", "datasets", "configs"):
        assert any(f.startswith(f"xaibench/{sub}/") for f in package)
    assert "xaibench/configs/synthetic.toml" in package
    # the only thing outside the package and its metadata is the console script
    outside = [f for f in files if f.startswith("../")]
    assert all(f.endswith("bin/xaibench") for f in outside), outside
