"""MkDocs hook: generates the config reference and the API reference pages at build time.

A page that holds the line ``<!-- mlip:config-reference -->`` gets the tables of every ``mlip train``
config field, read from the dataclasses in ``mlip/train/config.py``: type, default and the field's
trailing comment; ``<!-- mlip:learn-config-reference -->`` does the same for ``mlip learn``
(``mlip/learn/config.py``; its ``train`` section is a whole train config, documented once). A page
with ``<!-- mlip:api-reference -->`` gets the signature and docstring of each public name in :data:`API`.
A config field without a comment, or an API name that does not import, fails the build
(``mkdocs build --strict``), so the generated pages cannot fall behind the code.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import textwrap
import typing

CONFIG_MARK = "<!-- mlip:config-reference -->"
LEARN_CONFIG_MARK = "<!-- mlip:learn-config-reference -->"
API_MARK = "<!-- mlip:api-reference -->"

# section title -> public names ("module:attribute"), in reading order
API: dict[str, list[str]] = {
    "Models": [
        "mlip.models:create",
        "mlip.models:load",
        "mlip.models:available",
        "mlip.models.io:save",
        "mlip.models:Potential",
        "mlip.models:from_mace",
    ],
    "Model hyperparameters": [
        "mlip.models.model:ModelConfig",
        "mlip.models.mace:MACEConfig",
        "mlip.models.nequip:NequIPConfig",
        "mlip.models.gridnet:GridNetConfig",
    ],
    "ASE calculator": ["mlip.calculator:MLIPCalculator"],
    "Data": [
        "mlip.datasets:load",
        "mlip.datasets:detect_format",
        "mlip.data:AtomicData",
    ],
    "Molecular dynamics": [
        "mlip.md:from_atoms",
        "mlip.md:to_atoms",
        "mlip.md:ForceField",
        "mlip.md:simulate",
        "mlip.md:RunResult",
        "mlip.md:H5MDWriter",
        "mlip.md:ASEWriter",
        "mlip.md:read_h5md",
    ],
    "Training": ["mlip.train.config:load_config", "mlip.train.config:TrainConfig"],
    "Active learning and labelling": [
        "mlip.learn.config:load_config",
        "mlip.learn.loop:Loop",
        "mlip.learn.selection:select_uncertain",
        "mlip.learn.selection:structure_fingerprint",
        "mlip.dft.labelling:label_configurations",
        "mlip.dft.executor:LocalExecutor",
        "mlip.dft.executor:DaskExecutor",
    ],
    "Compiled models": ["mlip.compile:CompiledModel"],
    "Kernels": [
        "mlip.kernels:set_backend",
        "mlip.kernels:TensorProduct",
        "mlip.kernels:tp_conv",
        "mlip.kernels:gaunt_tp",
    ],
    "O(3)": ["mlip.o3:Irreps", "mlip.o3:spherical_harmonics", "mlip.o3:wigner_3j"],
}


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a dataclass, from its source: the trailing comment of the line
    ``name: type = default  # comment``, or the comment lines right above the field; ``ValueError``
    naming a field without either."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in textwrap.dedent(inspect.getsource(cls)).splitlines():
        comment = re.match(r"\s{4}#\s?(.*)$", line)
        if comment:
            above.append(comment.group(1).strip())
            continue
        field = re.match(r"\s{4}(\w+):[^#]*(?:\s#\s(.+))?$", line)
        if field and (field.group(2) or above):
            comments[field.group(1)] = field.group(2).strip() if field.group(2) else " ".join(above)
        above = []
    for f in dataclasses.fields(cls):
        if f.name not in comments:
            raise ValueError(f"{cls.__name__}.{f.name}: config field has no comment to document it")
    return comments


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return "see below" if dataclasses.is_dataclass(value) else repr(value)
    return "required"


def _md(text: str) -> str:
    """Escape a table cell."""
    return text.replace("|", "\\|")


def config_reference(top: type | None = None, shallow: tuple[type, ...] = ()) -> str:
    """Markdown tables of every field of the config dataclass ``top`` (default
    :class:`mlip.train.config.TrainConfig`), one per section; fields of a type in ``shallow`` are
    listed, not expanded. Plain top-level fields go into a first table, ``top level``."""
    from mlip.train.config import TrainConfig

    top = top or TrainConfig
    out: list[str] = []

    def row(f: dataclasses.Field, comment: str) -> str:
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        return f"| `{f.name}` | `{_md(kind)}` | `{_md(_default(f))}` | {_md(comment)} |"

    def section(cls: type, path: str) -> None:
        comments = field_comments(cls)
        hints = typing.get_type_hints(cls)
        doc = (cls.__doc__ or "").strip()
        out.extend([f"## `{path}`", "", doc, "", "| field | type | default | meaning |", "|---|---|---|---|"])
        nested = []
        for f in dataclasses.fields(cls):
            out.append(row(f, comments[f.name]))
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                nested.append((hint, f.name))
            elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
                nested.append((typing.get_args(hint)[0], f"{f.name}[]"))
        out.append("")
        for child, name in nested:
            section(child, f"{path}.{name}" if path else name)

    comments = field_comments(top)
    hints = typing.get_type_hints(top)
    expanded = [f for f in dataclasses.fields(top) if dataclasses.is_dataclass(hints[f.name])]
    expanded = [f for f in expanded if hints[f.name] not in shallow]
    plain = [f for f in dataclasses.fields(top) if f not in expanded]
    if plain:
        out.extend(["## top level", "", "| field | type | default | meaning |", "|---|---|---|---|"])
        out.extend([row(f, comments[f.name]) for f in plain] + [""])
    for f in expanded:
        section(hints[f.name], f.name)
    return "\n".join(out)


def learn_config_reference() -> str:
    """:func:`config_reference` of :class:`mlip.learn.config.LearnConfig` (its ``train`` not expanded)."""
    from mlip.learn.config import LearnConfig
    from mlip.train.config import TrainConfig

    return config_reference(LearnConfig, shallow=(TrainConfig,))


def _docstring_markdown(doc: str) -> str:
    """A reST-flavoured docstring as Markdown: ``x`` and :role:`~a.b` become code spans."""
    doc = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    return re.sub(r"::$", ":", doc, flags=re.M)


def api_reference() -> str:
    """Markdown: for each name in :data:`API`, its signature and docstring."""
    out: list[str] = []
    for title, names in API.items():
        out.extend([f"## {title}", ""])
        for name in names:
            module_name, attribute = name.split(":")
            obj = getattr(importlib.import_module(module_name), attribute)
            doc = inspect.getdoc(obj)
            if not doc:
                raise ValueError(f"{name}: public API without a docstring")
            try:
                signature = re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(inspect.signature(obj)))
            except (TypeError, ValueError):
                signature = ""
            kind = "class" if inspect.isclass(obj) else "def"
            public = f"{module_name}.{attribute}"
            out.extend([f"### `{public}`", "", "```text", f"{kind} {attribute}{signature}", "```", ""])
            out.extend([_docstring_markdown(doc), ""])
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CONFIG_MARK in markdown:
        markdown = markdown.replace(CONFIG_MARK, config_reference())
    if LEARN_CONFIG_MARK in markdown:
        markdown = markdown.replace(LEARN_CONFIG_MARK, learn_config_reference())
    if API_MARK in markdown:
        markdown = markdown.replace(API_MARK, api_reference())
    return markdown
