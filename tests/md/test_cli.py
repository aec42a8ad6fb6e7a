"""``mlip md`` with an LJ model object through the Python entry point, and its argument handling."""

import ase.io
import pytest
from mlip.md import cli as md_cli
from mlip.md import read_h5md

from mlip import cli
from mlip.models.classical import LennardJones


def _args(tmp_path, structure, *extra):
    parser = cli.build_parser()
    return parser.parse_args(
        [
            "md",
            str(structure),
            "--model",
            "unused.pt",
            "--output",
            str(tmp_path / "run.h5"),
            "--no-progress",
            *extra,
        ]
    )


def test_md_cli_runs_langevin_writes_h5md_and_plot(tmp_path, argon, lj, capsys):
    structure = tmp_path / "argon.extxyz"
    ase.io.write(structure, argon)
    args = _args(tmp_path, structure, "--steps", "20", "--dt", "5", "--temperature", "50", "--replicas", "2")
    assert md_cli.run(args, model=lj) == 0
    frames, step, _ = read_h5md(tmp_path / "run.h5")
    assert step == 20 and len(frames) == 2
    assert (tmp_path / "run.png").stat().st_size > 1000
    assert "ns/day" in capsys.readouterr().out


def test_md_cli_nve_from_smiles_reports_drift(tmp_path, capsys):
    soft = LennardJones(epsilon=0.001, sigma=1.0, cutoff=4.0)  # gentle at bond lengths
    args = _args(tmp_path, "CCO", "--smiles", "--ensemble", "nve", "--steps", "10", "--dt", "0.5")
    assert md_cli.run(args, model=soft) == 0
    assert "NVE drift" in capsys.readouterr().out
    frames, _, _ = read_h5md(tmp_path / "run.h5")
    assert len(frames[0]) == 9  # C2H6O with hydrogens


def test_md_cli_errors_are_clear(tmp_path, lj):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        md_cli.run(_args(tmp_path, tmp_path / "missing.xyz"), model=lj)
    with pytest.raises(ValueError, match="cannot parse the SMILES"):
        md_cli.read_structure("C1CC(", smiles=True)
