"""The user guide in docs/: its ```python examples run as written, its generated reference pages cover
the code, and it builds with ``mkdocs build --strict`` (skipped when MkDocs is not installed)."""

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _hooks():
    spec = importlib.util.spec_from_file_location("mlip_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page (```py blocks are shown only, never run)."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_guide_has_runnable_examples():
    assert len(PAGES) >= 8
    runnable = [page.name for page in PAGES if python_blocks(page)]
    assert {"index.md", "training.md", "evaluate.md", "md.md", "interop.md"} <= set(runnable)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_docs_python_examples_run(page, tmp_path, monkeypatch):
    """All blocks of one page run in order in one namespace, in an empty working directory."""
    if page.name == "interop.md":
        pytest.importorskip("torch_sim")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_config_reference_lists_every_field():
    from mlip.train.config import TrainConfig

    text = _hooks().config_reference()

    def walk(cls, path):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield path, f.name
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                yield from walk(hint, f.name)
            elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
                yield from walk(typing.get_args(hint)[0], f"{path}.{f.name}[]")

    for section, name in walk(TrainConfig, ""):
        if section:
            assert f"## `{section}`" in text, section
            assert f"| `{name}` |" in text, f"{section}.{name}"
    assert "peak learning rate" in text  # optim.lr's comment


def test_learn_config_reference_lists_every_field_but_the_train_config_once():
    from mlip.learn.config import LearnConfig

    text = _hooks().learn_config_reference()
    hints = typing.get_type_hints(LearnConfig)
    for f in dataclasses.fields(LearnConfig):
        if dataclasses.is_dataclass(hints[f.name]) and f.name != "train":
            assert f"## `{f.name}`" in text, f.name
            for child in dataclasses.fields(hints[f.name]):
                assert f"| `{child.name}` |" in text, f"{f.name}.{child.name}"
        else:
            assert f"| `{f.name}` |" in text, f.name
    assert "## `train`" not in text and "peak learning rate" not in text  # documented in config.md
    assert "most uncertain frames labelled per round" in text  # select.frames' comment


def test_config_reference_refuses_an_undocumented_field():
    hooks = _hooks()

    @dataclasses.dataclass
    class Section:
        """A section."""

        documented: int = 1  # has a comment
        # a comment above the field
        # on two lines
        above: int = 3
        undocumented: int = 2

    @dataclasses.dataclass
    class Documented:
        """A section."""

        documented: int = 1  # has a comment
        # a comment above the field
        # on two lines
        above: int = 3

    comments = hooks.field_comments(Documented)
    assert comments == {"documented": "has a comment", "above": "a comment above the field on two lines"}
    with pytest.raises(ValueError, match=r"Section\.undocumented: config field has no comment"):
        hooks.field_comments(Section)


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONSAFEPATH": "1"},  # `-m` would put the repo root (datasets/) on sys.path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config_page = (site / "config" / "index.html").read_text()
    assert "valid_every" in config_page and "time_limit" in config_page
    learn_page = (site / "active_learning" / "index.html").read_text()
    assert "min_distance" in learn_page and "max_dft_calls" in learn_page
    api_page = (site / "api" / "index.html").read_text()
    assert "MLIPCalculator" in api_page and "set_backend" in api_page


def _shell_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``mlip ...`` line of the guide's ```bash blocks (comments removed)."""
    out = []
    for page in PAGES:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M):
            for line in block.splitlines():
                command = line.split("  #")[0].strip()
                if re.match(r"^(\S*/)?mlip ", command):
                    out.append((page.name, command))
    return out


def test_documented_commands_parse():
    """Every ``mlip`` command line shown in the guide is accepted by the CLI's parser (verbs, flags)."""
    import shlex

    from mlip.cli import build_parser

    commands = _shell_commands()
    assert len(commands) >= 20
    parser = build_parser()
    for page, command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"{page}: `{command}` is not accepted by the mlip parser")


def test_documented_repository_paths_exist():
    """Files and folders of this repository that the guide names exist."""
    named = set()
    for page in PAGES:
        named |= set(
            re.findall(r"`((?:mlip|examples|lammps|benchmarks|tests|docs)/[\w./-]*)`", page.read_text())
        )
    assert "examples/lammps/" in named
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing
