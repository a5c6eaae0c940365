"""MkDocs hooks (mkdocs.yml ``hooks:``): the generated pages and the reference run's figures.

- Every registered method, metric, dataset and model family gets a page, generated from the
  registries when the site builds (``plugin_pages.py``), and its entry in the navigation: the nav
  entry of ``reference/<kind>/index.md`` in mkdocs.yml becomes that index followed by one entry
  per plugin.
- The committed reference results (``results/synthetic/<run>/``: report.md, plots/, training/) are
  added to the site under ``results/<run>/`` without copying them into docs/; the GPU check's
  output (``results/gpu_check/*.txt``) under ``results/gpu_check/``.
- A page's ``<!-- table: NAME ARG ... -->`` lines are replaced by tables generated from the
  committed run folders (``results_tables.py``), so the results pages quote no number by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))
import plugin_pages  # noqa: E402  (a sibling of this file, not an installed module)
import results_tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "synthetic"


def _expand(nav: Any, generated: dict[str, list]) -> Any:
    """``nav`` with each generated index path replaced by the index and its plugins' pages."""
    by_index = {entries[0]: entries for entries in generated.values()}
    if isinstance(nav, list):
        return [_expand(item, generated) for item in nav]
    if isinstance(nav, dict):
        return {title: (by_index[value] if isinstance(value, str) and value in by_index
                        else _expand(value, generated)) for title, value in nav.items()}
    return nav


def on_config(config: Any) -> Any:
    if config.nav is not None:
        config.nav = _expand(config.nav, plugin_pages.nav())
    return config


def on_files(files: Files, config: Any) -> Files:
    for path, markdown in plugin_pages.pages().items():
        files.append(File.generated(config, path, content=markdown))
    for run in sorted(RESULTS.glob("synthetic-*")):
        for src in [run / "report.md", *sorted(run.glob("plots/*.png")), *sorted(run.glob("training/*.png"))]:
            if src.is_file():
                uri = f"results/{run.name}/{src.relative_to(run).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(src)))
    for src in sorted((ROOT / "results" / "gpu_check").glob("*.txt")):
        files.append(File.generated(config, f"results/gpu_check/{src.name}", abs_src_path=str(src)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return results_tables.render(markdown)
