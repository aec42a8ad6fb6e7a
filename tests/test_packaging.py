"""The wheel ships every subpackage, each ``mlip.*`` module imports from it, and the repo's root folders
never shadow installed libraries (``datasets``, ``kernels``)."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {
    "mlip": ROOT / "mlip",
    "mlip.kernels": ROOT / "kernels",
    "mlip.datasets": ROOT / "datasets",
    "mlip.md": ROOT / "md",
}


def _source_packages() -> set[str]:
    found = set()
    for name, folder in PACKAGE_ROOTS.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    # nested roots (kernels inside mlip's namespace) are listed under their own mapping
    return found


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    missing = _source_packages() - listed
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        cwd=out,
    )
    (wheel,) = out.glob("mlip_torch-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
        names = zf.namelist()
    return site, names


def test_wheel_contains_the_mapped_subpackages(installed_wheel):
    _, names = installed_wheel
    for folder in ("mlip/kernels/", "mlip/datasets/", "mlip/md/", "mlip/o3/", "mlip/py.typed"):
        assert any(n.startswith(folder) for n in names), f"wheel lacks {folder}"
    assert not any(n.startswith(("datasets/", "kernels/", "md/", "tests/")) for n in names)


def test_every_module_imports_from_the_wheel(installed_wheel, tmp_path):
    site, _ = installed_wheel
    script = (
        "import importlib, pkgutil, mlip, sys\n"
        f"assert mlip.__file__.startswith({str(site)!r}), mlip.__file__\n"
        "names = [m.name for m in pkgutil.walk_packages(mlip.__path__, 'mlip.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(len(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) >= 5


def test_repo_folders_do_not_shadow_top_level_names():
    script = (
        "import importlib.util, sys\n"
        "for name in ('datasets', 'kernels', 'md'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        f"    assert spec is None or not str(spec.origin).startswith({str(ROOT)!r}), (name, spec.origin)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
