"""The documentation covers every registered plugin (without building the site).

The API pages of methods, metrics, datasets and model families are generated from the registries
when the site builds (docs/hooks/plugin_pages.py); `make docs` (part of `make test`) builds it with
--strict. These tests check what the build alone would not: every registered method and metric
has a docstring, documents each of its keys, and has a generated page that renders it, an entry in
its index and in the navigation; every built-in one is also in the hand-written guide pages.
"""

import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from xaibench.params import parameters
from xaibench.registry import REGISTRIES, Registry, description

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_hook(name: str):
    """A module of docs/hooks/ (documentation tooling, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pages_module = load_hook("plugin_pages")
PAGES = pages_module.pages()
NAV = pages_module.nav()
KINDS = ("methods", "metrics")


def installed(kind: str, distribution: str | None = None) -> list[str]:
    """Names registered through entry points (by ``distribution``, or by any): the installed
    plugins, not the fixtures some tests register for themselves while they run."""
    return sorted(ep.name for ep in metadata.entry_points(group=REGISTRIES[kind].group)
                  if distribution is None
                  or (ep.dist is not None and ep.dist.metadata["Name"] == distribution))


def builtin(kind: str) -> list[str]:
    return installed(kind, "xaibench")


PLUGINS = [(kind, name) for kind in KINDS for name in installed(kind)]


def test_every_plugin_kind_is_listed():
    assert {"methods", "metrics", "datasets", "models"} <= set(REGISTRIES)
    assert len(PLUGINS) >= 29  # 19 methods and 10 metrics are built in


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_plugin_has_a_docstring_that_documents_its_keys(kind, name):
    cls = REGISTRIES[kind].get(name)
    assert (cls.__doc__ or "").strip(), f"{kind} {name!r} ({cls.__qualname__}) has no docstring"
    assert description(cls) != "(no description)"
    documented = pages_module.doc_fields(cls)
    missing = [key for key in parameters(cls) if key not in documented]
    assert not missing, (f"{kind} {name!r}: keys {missing} have no entry in the docstring's Args: or "
                         f"Attributes: section")


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_plugin_has_a_generated_page_an_index_entry_and_a_nav_entry(kind, name):
    cls = REGISTRIES[kind].get(name)
    path = f"reference/{kind}/{name}.md"
    assert path in PAGES, f"no generated page for {kind} {name!r}"
    page = PAGES[path]
    assert f"::: {cls.__module__}.{cls.__qualname__}" in page  # mkdocstrings renders the class
    for key in parameters(cls):
        assert f"| `{key}` |" in page, f"key {key!r} missing from the page of {name!r}"
    assert f"[`{name}`]({name}.md)" in PAGES[f"reference/{kind}/index.md"]
    title = pages_module.KINDS[KINDS.index(kind)].title
    assert {name: path} in NAV[title]
    assert f"### `{name}`" in PAGES["reference/config-keys.md"]


def test_every_dataset_and_model_family_has_a_page():
    pages = pages_module.pages()  # now: other tests register plugins of their own as they run
    for kind in ("datasets", "models"):
        registered = set(REGISTRIES[kind].names())
        entries = pages_module.entries(kind)
        assert {n for _, names, _ in entries for n in names} == registered
        for slug, _, cls in entries:
            assert f"::: {cls.__module__}.{cls.__qualname__}" in pages[f"reference/{kind}/{slug}.md"]


def test_a_newly_registered_plugin_gets_a_page(monkeypatch):
    fake = metadata.EntryPoint("edges_for_docs", f"{__name__}:EdgesForDocs", "xaibench.methods")
    registry = Registry("method", "xaibench.methods", entry_points=lambda group: [fake])
    monkeypatch.setitem(pages_module.REGISTRIES, "methods", registry)
    page = pages_module.pages()["reference/methods/edges_for_docs.md"]
    assert f"::: {__name__}.EdgesForDocs" in page
    assert "| `scale` | <code>float</code> | `2.0` | multiplies the edge strength. |" in page
    assert "[methods.edges_for_docs]\nscale = 2.0" in page
    assert {"edges_for_docs": "reference/methods/edges_for_docs.md"} in pages_module.nav()["Methods"]


class EdgesForDocs:
    """Edge strength of the input: a plugin that only this test registers.

    Args:
        scale: multiplies the edge strength.
    """

    def __init__(self, *, scale: float = 2.0) -> None:
        self.scale = scale


def test_builtin_methods_and_metrics_are_in_the_guide_pages():
    methods = (DOCS / "methods.md").read_text()
    for name in builtin("methods"):
        assert f"| `{name}` |" in methods, f"docs/methods.md has no row for {name!r}"
    metrics = (DOCS / "metrics.md").read_text()
    for name in builtin("metrics"):
        assert f"| `{name}` |" in metrics, f"docs/metrics.md's table has no row for {name!r}"
        assert re.search(rf"^### .*`{name}`", metrics, re.M), \
            f"docs/metrics.md has no definition section for {name!r}"


def test_doc_fields_reads_google_sections():
    class Base:
        """Base.

        Attributes:
            a, b: shared text
                that continues.
        """

    class Child(Base):
        """Child.

        Args:
            c (int): its own key.
            a: overridden.

        Returns:
            not a key: ignored.
        """

    fields = pages_module.doc_fields(Child)
    assert fields == {"a": "overridden.", "b": "shared text that continues.", "c": "its own key."}

    class Grandchild(Child):
        """Sums up inherited keys in one line: their own entries above stay.

        Args:
            a, c: the inherited options.
        """

    assert pages_module.doc_fields(Grandchild) == fields


def test_sphinx_references_resolve_and_a_missing_target_does_not():
    griffe = pytest.importorskip("griffe")  # the docs extra; `make test` installs it
    refs = load_hook("griffe_sphinx_refs")
    package = griffe.load("xaibench", resolve_aliases=False)
    method = package["plugins.Method"]
    assert refs.resolve(package, method, "attribute") == "xaibench.plugins.Method.attribute"
    target = "xaibench.models.families.arch_family"
    assert refs.resolve(package, method, target) == target
    assert refs.resolve(package, package["api"], "model_key") == "xaibench.api.model_key"
    assert refs.resolve(package, method, "no_such_function") is None
    assert refs.split_items("Args:\n    a, b: text\n        more.\n    c: x") == \
        "Args:\n    a: text\n        more.\n    b: text\n        more.\n    c: x"


def test_the_readme_tables_are_generated_from_the_committed_runs():
    pytest.importorskip("pandas")
    tables = load_hook("results_tables")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "<!-- table: claim " in readme
    stale = "the README's tables are not the committed runs': python docs/hooks/results_tables.py README.md"
    assert tables.sync(readme) == readme, stale


def test_results_tables_are_generated_from_the_committed_runs():
    pd = pytest.importorskip("pandas")
    tables = load_hook("results_tables")
    root = Path(__file__).resolve().parents[1]
    seeds = root / "results" / "synthetic_seeds"
    run = seeds / "colour" / "synthetic_seeds-ba64afbd"  # colour, seed 1
    board = pd.read_csv(run / "leaderboard.csv")
    hybrid = board[(board["model"] == "joint_hybrid") & (board["method"] == "joint")].iloc[0]
    row = next(line for line in tables.seeds("results/synthetic_seeds").splitlines()
               if line.startswith("| colour | 1 |"))
    assert f"| {hybrid['relevance_mass_mean']:.3f} / {hybrid['relevance_mass_t75_mean']:.3f} |" in row
    merged = pd.read_csv(seeds / "nocolour" / "merged" / "merged_leaderboard.csv")
    joint = merged[(merged["model"] == "joint_unsup") & (merged["method"] == "joint")].iloc[0]
    assert f"| {joint['pompom_pos_mean']:.3f} ± {joint['pompom_pos_std']:.3f} |" in \
        tables.merged("results/synthetic_seeds/nocolour")
    reference, one_thread = "results/synthetic/synthetic-4fe2f982", "results/threads1/synthetic-b52241c4"
    accuracy = {path: pd.read_csv(root / path / "models.csv").set_index("model")["accuracy"]
                for path in (reference, one_thread)}
    threads = tables.threads(reference, one_thread)
    assert f"| joint_unsup | {accuracy[reference]['joint_unsup']:.3f} / " \
           f"{accuracy[one_thread]['joint_unsup']:.3f} |" in threads
    assert "| 82 of 91 |" in threads  # as `xaibench compare` counts them for resnet18
    current = "results/synthetic/synthetic-7af24ffa"  # the reference run the docs read
    board = pd.read_csv(root / current / "leaderboard.csv")
    ig = board[(board["model"] == "resnet18") & (board["method"] == "integrated_gradients")].iloc[0]
    best, worst = ig["aopc_rank"], ig["aopc_rank_worst"]
    ranks = f"#{best}" + (f"-{worst}" if worst != best else "")
    assert f"| integrated_gradients | {ig['family_rank']:.2f} | {ig['mean_rank']:.2f} | " \
           f"{ig['aopc_mean']:.3f} {ranks} |" in tables.leaderboard(current)
    page = tables.render((DOCS / "joint-results.md").read_text())
    assert "<!-- table:" not in page and "| 0.500 | 0.563 |" in page  # nocolour seed 0's joint maps
    beyond = "results/experiments/joint_hybrid_seeds/runs/nc_seeds345-e643295d"  # seeds 3, 4, 5
    claims = pd.read_csv(root / beyond / "joint_claim.csv", dtype={"seed": str}).set_index("seed")
    row = next(line for line in tables.hybrid_seeds(beyond).splitlines()
               if line.startswith("| nocolour | 3 |"))
    mass, thresholded = claims.loc["3", "mass"], claims.loc["3", "mass_thresholded"]
    assert row.endswith(f"| {mass:.3f} | {thresholded:.3f} | {'yes' if mass >= 0.25 else 'no'} | "
                        f"{'yes' if thresholded >= 0.6 else 'no'} |")


PEERS = ("captum", "quantus", "grad-cam", "zennit", "timm", "torchvision", "pytorch")
ISSUE_REF = re.compile(r"\b(?:issue|pr|pull\s+request)s?\s*#?\d+|(?<![\w`/&-])#\d+\b(?!-)", re.I)
WORK_HISTORY = re.compile(r"\bsessions?\b|\blent\b|\bthis\s+stop\b|\bwe\s+(?:tried|measured|ran)\b"
                          r"|\bran\s+out\b|\bwhose\s+cpu\b|\bother\s+engineers?\b|\banother\s+engineer\b"
                          r"|\bdone-when\b|\bnot\s+kept\b|\bscratch\s+(?:change|experiment)", re.I)


def history_in(text: str) -> list[str]:
    """This project's issue numbers and accounts of the work in ``text``. Allowed: a peer
    library's issue (``Captum #646``, ``Quantus PR #374``), a URL, and a rank in a table cell or a
    rank range (``0.340 #1``, ``#2-4``); in prose write "rank 1", not "#1"."""
    text = re.sub(r"https?://\S+", "", text)
    found = [" ".join(m.group(0).split()) for m in WORK_HISTORY.finditer(text)]
    for m in ISSUE_REF.finditer(text):
        before = text[max(0, m.start() - 40):m.start()].lower()
        rank = m.group(0).startswith("#") and re.search(r"\d\s*$", before)  # "0.340 #1" in a table
        if rank or any(peer in before for peer in PEERS):
            continue
        found.append(m.group(0))
    return found


def test_history_check_catches_the_old_joint_page_and_allows_citations():
    old = ("Where it stood before issue 15 (measured on this machine while three other\nengineers' jobs "
           "ran). Replicate padding (tried, not kept). colour 2: not run, the session's CPU time ran out. "
           "The Done-when of issue 15 asked for it.")
    found = set(history_in(old))
    assert {"issue 15", "other engineers", "not kept", "session", "ran out", "Done-when"} <= found
    allowed = ("Captum #646 and Quantus PR #374 report it (https://github.com/x/y/issues/12); "
               "AOPC 0.340 #1-3, 0.035 #8 and ranks `#2-4`; see [the rule](run-folder.md#the-ranking-rule).")
    assert history_in(allowed) == []


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_docs_hold_no_issue_numbers_or_work_history(page):
    found = history_in((DOCS.parent / page).read_text())
    assert not found, (f"{page}: {found} (the guide describes the software; a result names its commit "
                       f"and machine)")
