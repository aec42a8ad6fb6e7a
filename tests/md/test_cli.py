"""``mlip md``: end to end with a saved model file, with an LJ model object through the Python entry point,
and its argument handling."""

import ase.io
import pytest
import torch

from mlip import cli
from mlip.calculator import MLIPCalculator
from mlip.md import cli as md_cli
from mlip.md import read_h5md
from mlip.models import load
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


def test_mlip_md_with_a_saved_model_file(tmp_path, tiny_mace, capsys):
    model_path = tmp_path / "tiny.safetensors"
    tiny_mace.save(model_path)
    output = tmp_path / "ethanol.h5"
    argv = ["md", "CCO", "--smiles", "--model", str(model_path), "--ensemble", "nve", "--steps", "6"]
    argv += ["--dt", "0.5", "--write-interval", "3", "--output", str(output), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "6 steps of 0.5 fs" in out and "NVE drift" in out
    frames, step, time = read_h5md(output)
    assert step == 6 and time == 6 * 0.5 and len(frames) == 1
    # the last frame's stored energy is the saved model's energy at the stored positions
    atoms = frames[0]
    atoms.calc = MLIPCalculator(load(model_path), device="cpu", dtype=torch.float64)
    assert atoms.get_potential_energy() == pytest.approx(_stored_energy(output), abs=1e-10)
    assert output.with_suffix(".png").stat().st_size > 1000


def _stored_energy(path):
    """Potential energy (eV) of system 0 in the last frame of an H5MD file written by mlip.md."""
    import h5py

    with h5py.File(path, "r") as f:
        return float(f["observables/system_0000/potential/value"][-1])


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


def test_md_device_defaults_to_auto(tmp_path, argon, lj):
    structure = tmp_path / "argon.extxyz"
    ase.io.write(structure, argon)
    args = _args(tmp_path, structure, "--steps", "2", "--ensemble", "nve")
    assert args.device == "auto"
    assert md_cli.run(args, model=lj) == 0
    assert args.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
