"""`mlip label`: normal-mode sampling, resumable extxyz store, PySCF labels (units, signs, resume)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mlip.cli import main as cli_main
from mlip.dft import sampling, store


@pytest.fixture(scope="module")
def ethanol():
    return sampling.molecule_from_smiles("CCO", seed=0)


def test_mmff_normal_modes_of_ethanol(ethanol):
    from ase import Atoms

    positions, hessian = sampling.mmff_hessian(ethanol)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-6)
    masses = Atoms(numbers=[a.GetAtomicNum() for a in ethanol.GetAtoms()]).get_masses()
    eigenvalues, vectors = sampling.normal_modes(hessian, masses)
    wavenumbers = sampling.wavenumbers(eigenvalues)
    assert vectors.shape == (27, 21)
    assert 150 < wavenumbers.min() and 3500 < wavenumbers.max() < 4000  # torsions ... O-H stretch
    assert ((2800 < wavenumbers) & (wavenumbers < 3100)).sum() == 5  # five C-H stretches


def test_thermal_samples_are_seeded_and_thermal(ethanol):
    a = sampling.sample_molecule(ethanol, 200, temperature=500.0, seed=3)
    b = sampling.sample_molecule(ethanol, 200, temperature=500.0, seed=3)
    c = sampling.sample_molecule(ethanol, 5, temperature=500.0, seed=4)
    assert [x.info["config_id"] for x in a[:3]] == [0, 1, 2]
    np.testing.assert_array_equal(a[7].positions, b[7].positions)
    assert not np.allclose(a[0].positions, c[0].positions)
    x = np.stack([s.positions for s in a])
    reference = np.array(ethanol.GetConformer().GetPositions())
    np.testing.assert_allclose(x.mean(axis=0), reference, atol=0.05)
    rms = np.sqrt(((x - reference) ** 2).sum(-1).mean())
    assert 0.05 < rms < 0.3  # Å: thermal at 500 K, nowhere near dissociation
    cold = np.stack([s.positions for s in sampling.sample_molecule(ethanol, 200, 50.0, seed=3)])
    assert np.sqrt(((cold - reference) ** 2).sum(-1).mean()) == pytest.approx(rms * np.sqrt(0.1), rel=1e-6)


def test_store_drops_a_torn_trailing_frame(tmp_path, ethanol):
    path = tmp_path / "frames.extxyz"
    frames = sampling.sample_molecule(ethanol, 3, 300.0, seed=0)
    for atoms in frames:
        store.append_frame(path, atoms)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a kill in the middle of the last write
    kept = store.read_frames(path)
    assert [a.info["config_id"] for a in kept] == [0, 1]
    assert path.read_text() == "".join(store.frame_text(a) for a in frames[:2])


@pytest.mark.skipif(importlib.util.find_spec("pyscf") is None, reason="pyscf (extra 'dft') not installed")
def test_label_h2_units_signs_and_resume(tmp_path, capsys):
    from ase import Atoms
    from ase.io import read, write

    from mlip.dft.pyscf_labeler import DFTSettings, label

    configs = tmp_path / "h2.extxyz"
    write(configs, [Atoms("H2", positions=[[0, 0, 0], [0, 0, d]]) for d in (0.70, 0.80)], format="extxyz")
    out = tmp_path / "labelled.extxyz"
    options = ["--configs", str(configs), "--xc", "LDA", "--basis", "sto-3g"]
    assert cli_main(["label", str(out), *options]) == 0
    frames = read(out, index=":")
    assert [f.info["config_id"] for f in frames] == [0, 1]
    settings = DFTSettings(xc="LDA", basis="sto-3g")
    h = 1e-3
    numbers = np.array([1, 1])
    e_plus = label(numbers, np.array([[0, 0, 0], [0, 0, 0.70 + h]]), settings)["energy"]
    e_minus = label(numbers, np.array([[0, 0, 0], [0, 0, 0.70 - h]]), settings)["energy"]
    force_z = frames[0].get_forces()[1, 2]  # eV/Å on the second atom, = -dE/dz
    assert force_z == pytest.approx(-(e_plus - e_minus) / (2 * h), rel=1e-4)
    assert force_z > 0  # 0.70 Å is inside the LDA/STO-3G minimum: the atoms repel
    assert frames[0].get_potential_energy() == pytest.approx(
        frames[0].info["energy_hartree"] * 27.211386, rel=1e-7
    )
    # resume: a rerun labels nothing; a torn last frame is relabelled
    capsys.readouterr()
    assert cli_main(["label", str(out), *options]) == 0
    assert "2 of 2 configurations already labelled; 0 to go" in capsys.readouterr().out
    text = out.read_text()
    out.write_text(text[:-30])
    assert cli_main(["label", str(out), *options]) == 0
    assert "1 of 2 configurations already labelled; 1 to go" in capsys.readouterr().out
    assert sorted(f.info["config_id"] for f in read(out, index=":")) == [0, 1]


def test_md_sampling_with_a_model(tmp_path):
    from mlip import models

    model_path = tmp_path / "tiny.model"
    models.create(
        "mace", species=[1, 6, 8], seed=0, hidden_irreps="4x0e+4x1o", max_ell=1, correlation=1
    ).save(model_path)
    out = tmp_path / "md.extxyz"
    args = ["label", str(out), "--smiles", "CCO", "--method", "md", "--model", str(model_path)]
    assert cli_main([*args, "--count", "3", "--md-interval", "4", "--sample-only"]) == 0
    from ase.io import read

    frames = read(out, index=":")
    assert [f.info["config_id"] for f in frames] == [0, 1, 2]
    assert not np.allclose(frames[0].positions, frames[1].positions)
    assert all(0.8 < f.get_all_distances()[np.triu_indices(9, 1)].min() for f in frames)
