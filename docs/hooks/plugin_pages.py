"""The API reference pages of every registered plugin, generated from the registries.

``pages()`` returns {path under docs/: Markdown} for one page per method, metric, dataset and model
family, an index per kind and the page of every config key. Plugins are read through the public
registry interface (``xaibench.registry.REGISTRIES``: ``names``, ``get``, ``group``, and
``description``), so whatever is registered, built-in or installed by a third-party distribution's
entry point, gets a page. mkdocs itself is not imported here: ``docs/hooks/mkdocs_hooks.py`` adds
these pages to the build, and ``tests/test_docs.py`` checks them without mkdocs.
"""

from __future__ import annotations

import html
import inspect
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from xaibench.config import RunConfig
from xaibench.meta.settings import MetaConfig
from xaibench.params import parameters
from xaibench.registry import REGISTRIES, description


@dataclass(frozen=True)
class Kind:
    """One registry's pages: its folder under docs/reference/ and the config section it fills."""

    key: str  # the key in REGISTRIES
    title: str
    singular: str
    section: str  # how a config names one plugin of this kind


KINDS = (
    Kind("methods", "Methods", "method", "[methods.{name}]"),
    Kind("metrics", "Metrics", "metric", "[metrics.{name}]"),
    Kind("datasets", "Datasets", "dataset", '[dataset]\nname = "{name}"'),
    Kind("models", "Model families", "model", "[models.my_model]\narch = \"{arch}\""),
)
SOURCES = ("torchvision", "timm", "torchscript", "python", "given")  # arch = "<source>:<name>"
EXAMPLE_NAMES = {"torchvision": "resnet18", "timm": "deit_small_patch16_224",
                 "torchscript": "weights/model.pt", "python": "my_models:make", "given": "MyNet"}
HIDDEN_MODEL_KEYS = ("id",)  # the table name, not a key


def class_path(cls: type) -> str:
    """The dotted path mkdocstrings documents ``cls`` under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def plugins(kind: str) -> list[tuple[str, type]]:
    """(name, class) of every plugin registered in ``kind``, by name."""
    registry = REGISTRIES[kind]
    return [(name, registry.get(name)) for name in registry.names()]


def families() -> list[tuple[str, list[str], type]]:
    """Model families: (page slug, names, class), one per class of the model registry (several
    architecture names share one class, e.g. resnet18, resnet50 and vgg16)."""
    groups: dict[str, tuple[list[str], type]] = {}
    for name, cls in plugins("models"):
        groups.setdefault(class_path(cls), ([], cls))[0].append(name)
    out = []
    for names, cls in groups.values():
        slug = names[0] if len(names) == 1 else cls.__name__.lower()
        out.append((slug, names, cls))
    return sorted(out, key=lambda item: item[1][0])


def entries(kind: str) -> list[tuple[str, list[str], type]]:
    """(page slug, names, class) for every page of ``kind``."""
    if kind == "models":
        return families()
    return [(name, [name], cls) for name, cls in plugins(kind)]


def page_path(kind: str, slug: str) -> str:
    return f"reference/{kind}/{slug}.md"


def entry_point(kind: str, name: str) -> str:
    """Where the name is registered: the entry point and the distribution that declares it."""
    for ep in metadata.entry_points(group=REGISTRIES[kind].group):
        if ep.name == name:
            dist = getattr(ep, "dist", None)
            owner = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "?"
            return f"entry point `{ep.name} = \"{ep.value}\"` in group `{ep.group}` ({owner})"
    return "registered at import time (no entry point)"


# -- parameters -----------------------------------------------------------------------------------


def type_text(hint: Any) -> str:
    text = inspect.formatannotation(hint)
    return text.replace("typing.", "").replace("NoneType", "None")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def default_text(default: Any) -> str:
    if default is inspect.Parameter.empty:
        return "required"
    if default is None:
        return "none (unset)"
    return f"`{toml_value(default)}`"


def _doc_entries(doc: str) -> list[tuple[list[str], str]]:
    """(keys, text) of each entry of the Google-style ``Args:`` and ``Attributes:`` sections."""
    entries: list[tuple[list[str], str]] = []
    in_section = False
    for line in inspect.cleandoc(doc).splitlines():
        if re.fullmatch(r"(Args|Arguments|Attributes|Parameters):", line.strip()):
            in_section = True
            continue
        if in_section and line and not line.startswith(" "):
            in_section = False  # the section ended
        if not in_section:
            continue
        match = re.match(r"^ {4}([\w, ]+?)(?: \(.*?\))?: (.*)$", line)
        if match:
            entries.append(([k.strip() for k in match.group(1).split(",")], match.group(2).strip()))
        elif entries and line.strip():
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return entries


def doc_fields(cls: type) -> dict[str, str]:
    """Key -> description from the ``Args:`` and ``Attributes:`` sections of the class docstring
    and its bases'. ``a, b: text`` describes both keys; an entry of its own (``a: text``) beats
    such a group entry, else the subclass wins (a metric that sums up the engine's options in one
    line keeps the engine's own description of each)."""
    fields: dict[str, tuple[str, bool]] = {}
    for klass in reversed(inspect.getmro(cls)):
        for keys, entry in _doc_entries(klass.__dict__.get("__doc__") or ""):
            for key in keys:
                own = len(keys) == 1
                if own or not fields.get(key, ("", False))[1]:
                    fields[key] = (entry, own)
    return {key: entry for key, (entry, _) in fields.items()}


ROLE = re.compile(r":(?:py:)?\w+:`(~?)([\w.]+)(\(\))?`")


def plain(text: str) -> str:
    """Docstring text as Markdown: a Sphinx cross-reference as code (``:func:`~a.b``` -> `b`)."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}"
                              f"{m.group(3) or ''}`", text)


def text(doc: str) -> str:
    """Docstring text as Markdown: roles as code, ``<`` and ``>`` escaped outside code spans
    (``results/<dataset>/`` is not an HTML tag), on one line."""
    parts = plain(doc).replace("\n", " ").split("`")
    parts[::2] = [html.escape(part, quote=False) for part in parts[::2]]
    return "`".join(parts)


def cell(doc: str) -> str:
    """Docstring text for a Markdown table cell: as :func:`text`, with pipes escaped."""
    return text(doc).replace("|", "\\|")


def code_cell(text: str) -> str:
    """Code in a table cell: an HTML code element, so that a ``|`` in it cannot split the row."""
    return f"<code>{html.escape(text).replace('|', '&#124;')}</code>"


def keys_table(cls: type, *, hidden: tuple[str, ...] = ()) -> str:
    params = {k: v for k, v in parameters(cls).items() if k not in hidden}
    if not params:
        return "No keys: this plugin has no parameters.\n"
    docs = doc_fields(cls)
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, (hint, default) in params.items():
        rows.append(f"| `{key}` | {code_cell(type_text(hint))} | {cell(default_text(default))} | "
                    f"{cell(docs.get(key, ''))} |")
    return "\n".join(rows) + "\n"


def toml_example(header: str, cls: type, *, hidden: tuple[str, ...] = ()) -> str:
    lines = [header]
    for key, (_, default) in parameters(cls).items():
        if key in hidden or (key == "arch" and "arch =" in header):
            continue
        if default is inspect.Parameter.empty:
            lines.append(f"{key} = ...  # required")
        elif default is None:
            lines.append(f"# {key} = ...  (default: unset)")
        else:
            lines.append(f"{key} = {toml_value(default)}")
    return "```toml\n" + "\n".join(lines) + "\n```\n"


# -- pages ---------------------------------------------------------------------------------------


def facts(kind: str, cls: type) -> list[tuple[str, str]]:
    """Kind-specific class attributes, as (label, value) rows."""
    if kind == "methods":
        return [("explains", f"{getattr(cls, 'requirement', 'any model')} "
                             f"(families: {', '.join(getattr(cls, 'families', ()))})"),
                ("channels -> map", str(getattr(cls, "reduction", "n/a"))),
                ("control (ignores the model)", "yes" if not getattr(cls, "uses_model", True) else "no")]
    if kind == "metrics":
        directions = getattr(cls, "directions", {}) or {}
        rows = [("higher is better", "yes" if getattr(cls, "higher_is_better", True) else "no"),
                ("needs ground-truth masks", "yes" if getattr(cls, "requires_masks", False) else "no")]
        if directions:
            text = ", ".join(f"`{k}`: " + ("informational" if v is None else "higher" if v else "lower")
                             for k, v in directions.items())
            rows.append(("other score columns (direction)", text))
        if getattr(cls, "needs_method", False):
            rows.append(("recomputes maps", "yes: it is given the method"))
        return rows
    return []


def functions_of(cls: type) -> list[str]:
    """Public functions defined in the plugin's module: the pure maths the class configures."""
    module = inspect.getmodule(cls)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return [f"{module.__name__}.{name}" for name in names
            if inspect.isfunction(getattr(module, name, None))
            and getattr(module, name).__module__ == module.__name__]


def plugin_page(kind: Kind, slug: str, names: list[str], cls: type) -> str:
    path = class_path(cls)
    shown = ", ".join(f"`{n}`" for n in names)
    lines = [f"# {shown}" if kind.key != "models" else f"# {cls.__name__}: {shown}", "",
             text(description(cls)), "",
             f"| {kind.singular} | {shown} |", "| --- | --- |",
             f"| class | [`{path}`][{path}] |"]
    lines += [f"| registered as `{name}` | {entry_point(kind.key, name)} |" for name in names]
    lines += [f"| {label} | {cell(value)} |" for label, value in facts(kind.key, cls)]
    lines.append("")
    hidden = HIDDEN_MODEL_KEYS if kind.key == "models" else ()
    if kind.key == "models":
        arch = f"{names[0]}:{EXAMPLE_NAMES.get(names[0], 'NAME')}" if names[0] in SOURCES else names[0]
        header = kind.section.format(arch=arch)
    else:
        header = kind.section.format(name=names[0])
    lines += ["## Config keys", "",
              "Checked against these declarations before anything runs: an unknown key, a wrong type "
              "or an out-of-range value is a one-line error naming the key.", "",
              keys_table(cls, hidden=hidden), toml_example(header, cls, hidden=hidden),
              "## Reference", "",
              f"::: {path}", "    options:", "      heading_level: 3", "      members: false", ""]
    functions = functions_of(cls)
    if functions:
        lines += ["## Functions", "", f"The pure functions of `{cls.__module__}`.", ""]
        for function in functions:
            lines += [f"::: {function}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines)


INTROS = {
    "methods": "Every registered explainer. A method is a class with keyword-only hyperparameters and "
               "one call, `attribute(model, images [B,3,H,W], targets [B]) -> Tensor[B,H,W]` "
               "(see [Writing a plugin](../../plugins.md) and [`Method`][xaibench.plugins.Method]).",
    "metrics": "Every registered metric. A metric holds its configuration; the per-image maths is in "
               "its module's pure functions (see [Metrics](../../metrics.md) for the definitions and "
               "formulas, and [`Metric`][xaibench.plugins.Metric]).",
    "datasets": "Every registered dataset: a factory of the train, validation and test splits "
                "(see [Datasets](../../datasets.md) and [`Dataset`][xaibench.plugins.Dataset]).",
    "models": "Every registered model family: the trainable architectures and the model sources "
              "(`arch = \"<source>:<name>\"`, see [Your own model and data](../../own-model.md)). "
              "Several architecture names can share one family.",
}


def index_page(kind: Kind) -> str:
    lines = [f"# {kind.title}", "", INTROS[kind.key],
             "This list is generated from the registry when the documentation is built, so every "
             "installed plugin is here.", ""]
    extra = {"methods": " | explains | control", "metrics": " | higher is better | masks"}.get(kind.key, "")
    lines += [f"| name | class | what{extra} |", "| --- | --- | --- |" + " --- |" * extra.count("|")]
    for slug, names, cls in entries(kind.key):
        link = ", ".join(f"[`{n}`]({slug}.md)" for n in names)
        row = f"| {link} | `{cls.__name__}` | {cell(description(cls))}"
        if kind.key == "methods":
            row += (f" | {cell(getattr(cls, 'requirement', 'any model'))}"
                    f" | {'yes' if not getattr(cls, 'uses_model', True) else ''}")
        elif kind.key == "metrics":
            row += (f" | {'yes' if getattr(cls, 'higher_is_better', True) else 'no'}"
                    f" | {'yes' if getattr(cls, 'requires_masks', False) else ''}")
        lines.append(row + " |")
    return "\n".join(lines) + "\n"


def config_keys_page() -> str:
    """Every key of every section, generated from the declarations the config checks use."""
    lines = ["# Config keys", "",
             "Every key a config file (or `--set section.key=value`) accepts, generated from the "
             "declarations the config checker reads, so nothing here can fall behind the code. "
             "[Configs](../configs.md) explains the sections.", "",
             "## [run] {#run}", "", "All optional.", "", keys_table(RunConfig),
             "## [dataset] {#dataset}", "",
             "`name` picks the dataset plugin; the other keys are that plugin's.", ""]
    for slug, names, cls in entries("datasets"):
        lines += [f"### `{names[0]}`", "", f"[{text(description(cls))}](datasets/{slug}.md)", "",
                  keys_table(cls)]
    lines += ["## [models.&lt;id&gt;] {#models}", "",
              "The table name is the model's name in the leaderboard; `arch` picks the family "
              "(default `resnet18`): an architecture name, or `<source>:<name>` for a model "
              "loaded from elsewhere.", ""]
    for slug, names, cls in entries("models"):
        lines += [f"### {', '.join(f'`{n}`' for n in names)}", "",
                  f"[{text(description(cls))}](models/{slug}.md)", "",
                  keys_table(cls, hidden=HIDDEN_MODEL_KEYS)]
    for kind in KINDS[:2]:
        lines += [f"## [{kind.key}.&lt;id&gt;] {{#{kind.key}}}", "",
                  f"The table name is the {kind.singular}'s id in the run; `plugin = \"<name>\"` "
                  f"picks the plugin (default: the id), so one plugin can appear several times with "
                  f"different keys."
                  + (" `models = [\"<model id>\", ...]` limits a method to some models (default: "
                     "every model it can explain)." if kind.key == "methods" else ""), ""]
        for slug, names, cls in entries(kind.key):
            lines += [f"### `{names[0]}`", "", f"[{text(description(cls))}]({kind.key}/{slug}.md)", "",
                      keys_table(cls)]
    lines += ["## [meta] {#meta}", "",
              "Optional: the [meta-evaluation](../meta.md) of the run's metrics. All keys optional; "
              "`[meta.sweep.<metric id>]` tables give some of that metric's keys as lists of values "
              "(every combination is a setting of the rank-stability sweep).", "",
              keys_table(MetaConfig, hidden=("sweep", "variants"))]
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """{path under docs/: Markdown} of every generated page."""
    out = {"reference/config-keys.md": config_keys_page()}
    for kind in KINDS:
        out[f"reference/{kind.key}/index.md"] = index_page(kind)
        for slug, names, cls in entries(kind.key):
            out[page_path(kind.key, slug)] = plugin_page(kind, slug, names, cls)
    return out


def nav() -> dict[str, list]:
    """Navigation entries of the generated pages: {kind title: [index, {name: path}, ...]}."""
    return {kind.title: [f"reference/{kind.key}/index.md"]
            + [{", ".join(names) if kind.key != "models" else cls.__name__: page_path(kind.key, slug)}
               for slug, names, cls in entries(kind.key)]
            for kind in KINDS}
