"""mace-torch models convert to our ``mace`` with equal energies, forces and stress (float64, 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("mace.modules", reason="mace-torch not installed (pip install 'mlip-torch[mace]')")

from mlip.data.atomic_data import collate, from_atoms  # noqa: E402
from mlip.data.neighbors import add_neighbors  # noqa: E402
from mlip.interop.mace import MACEConversionError, from_mace, load_mace_file, mace_inputs  # noqa: E402

R_MAX = 4.0
TOL = 1e-10


def build_mace(
    species=(1, 6, 8),
    max_ell=2,
    correlation=3,
    num_interactions=2,
    hidden="8x0e+8x1o",
    zbl=False,
    scale_shift=True,
    heads=None,
    seed=0,
    **kwargs,
):
    """A random-initialised float64 mace-torch model (the training script's defaults otherwise)."""
    from e3nn import o3
    from mace.modules import MACE, RealAgnosticResidualInteractionBlock, ScaleShiftMACE

    num_heads = len(heads) if heads else 1
    e0 = np.linspace(-1.0, -3.0, len(species) * num_heads).reshape(num_heads, len(species))
    extra = {}
    if scale_shift:
        scale = [1.7, 0.6][:num_heads]
        shift = [0.1, -0.3][:num_heads]
        extra = dict(
            atomic_inter_scale=scale if heads else scale[0], atomic_inter_shift=shift if heads else shift[0]
        )
    if heads:
        extra["heads"] = heads
    kwargs.setdefault("interaction_cls_first", RealAgnosticResidualInteractionBlock)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        model = (ScaleShiftMACE if scale_shift else MACE)(
            r_max=R_MAX,
            num_bessel=6,
            num_polynomial_cutoff=5,
            max_ell=max_ell,
            interaction_cls=RealAgnosticResidualInteractionBlock,
            num_interactions=num_interactions,
            num_elements=len(species),
            hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=e0 if heads else e0[0],
            avg_num_neighbors=6.0,
            atomic_numbers=list(species),
            correlation=correlation,
            gate=torch.nn.functional.silu,
            radial_MLP=[8, 8],
            pair_repulsion=zbl,
            **extra,
            **kwargs,
        )
    finally:
        torch.set_default_dtype(previous)
    # train-like weights: mace-torch starts some at zero-free random values already; perturb the rest
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def systems(species):
    """A compressed molecule (close contacts, so the ZBL term is non-zero) and a periodic cell, with every
    element of ``species``; float64 records with neighbour lists."""
    from ase import Atoms

    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    numbers = [species[i % len(species)] for i in range(8)]
    molecule = Atoms(numbers=numbers, positions=0.9 * grid[:8] + rng.normal(scale=0.1, size=(8, 3)))
    numbers = [species[i % len(species)] for i in range(27)]
    crystal = Atoms(
        numbers=numbers,
        positions=1.45 * grid + rng.normal(scale=0.15, size=(27, 3)),
        cell=[[4.35, 0.0, 0.0], [0.3, 4.4, 0.0], [0.2, -0.2, 4.3]],
        pbc=True,
    )
    return molecule, crystal


def mace_reference(model, inputs, stress):
    """mace-torch's outputs with the default dtype float64, as its calculator runs a float64 model (its
    ZBL term promotes integer charges to the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return model(inputs, compute_force=True, compute_stress=stress)
    finally:
        torch.set_default_dtype(previous)


def compare(mace_model, ours, species, head=0):
    """Max |difference| of energy, forces and stress (periodic cell only) over both systems."""
    molecule, crystal = systems(species)
    diffs = {}
    for name, atoms in (("molecule", molecule), ("crystal", crystal)):
        data = add_neighbors(collate([from_atoms(atoms)]), R_MAX)
        periodic = name == "crystal"
        got = ours(data, compute_stress=periodic)
        ref = mace_reference(mace_model, mace_inputs(data, list(species), head=head), periodic)
        diffs[f"{name} energy"] = (got["energy"] - ref["energy"]).abs().max().item()
        diffs[f"{name} forces"] = (got["forces"] - ref["forces"]).abs().max().item()
        if periodic:
            diffs[f"{name} stress"] = (got["stress"] - ref["stress"]).abs().max().item()
        assert ref["forces"].abs().max() > 1e-3  # a non-trivial comparison
    return diffs


SHAPES = {
    "L2-nu3-2layers-ZBL": dict(species=(1, 6, 8), max_ell=2, correlation=3, num_interactions=2, zbl=True),
    "L3-nu2-1layer": dict(species=(1, 8), max_ell=3, correlation=2, num_interactions=1),
    "L3-nu3-3layers-l2-ZBL": dict(
        species=(1, 6, 7, 8), max_ell=3, correlation=3, num_interactions=3, hidden="4x0e+4x1o+4x2e", zbl=True
    ),
    "L2-nu2-plainMACE-metals": dict(
        species=(13, 29), max_ell=2, correlation=2, num_interactions=2, scale_shift=False, zbl=True
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_converted_model_equals_mace_torch(shape):
    mace_model = build_mace(**SHAPES[shape])
    ours = from_mace(mace_model)
    diffs = compare(mace_model, ours, SHAPES[shape]["species"])
    assert max(diffs.values()) < TOL, diffs


def test_zbl_term_is_exercised():
    """On the compressed molecule the pair term is a sizeable part of the energy, and it is converted."""
    model = build_mace(zbl=True, seed=3)
    ours = from_mace(model)
    assert ours.pair is not None
    data = add_neighbors(collate([from_atoms(systems((1, 6, 8))[0])]), R_MAX)
    ours.pair, pair = None, ours.pair
    without = ours(data)["energy"]
    ours.pair = pair
    assert (ours(data)["energy"] - without).abs().item() > 0.1


@pytest.mark.parametrize("head", ["pt_head", "Default"])
def test_one_head_of_a_multihead_model(head):
    model = build_mace(heads=["pt_head", "Default"], zbl=True)
    ours = from_mace(model, head=head)
    index = ["pt_head", "Default"].index(head)
    assert ours.config.scale == pytest.approx([1.7, 0.6][index])
    diffs = compare(model, ours, (1, 6, 8), head=index)
    assert max(diffs.values()) < TOL, diffs


def test_cuequivariance_form_converts():
    pytest.importorskip("cuequivariance_torch")
    from mace.cli.convert_e3nn_cueq import run as to_cueq

    mace_model = build_mace(max_ell=1, correlation=2, zbl=True)
    previous = torch.get_default_dtype()
    try:
        cueq_model = to_cueq(mace_model, device="cpu", return_model=True)
    finally:
        torch.set_default_dtype(previous)
    assert cueq_model.interactions[0].cueq_config.enabled
    diffs = compare(cueq_model, from_mace(cueq_model), (1, 6, 8))
    assert max(diffs.values()) < TOL, diffs


def test_multihead_needs_a_head_name():
    model = build_mace(heads=["pt_head", "Default"])
    with pytest.raises(MACEConversionError, match="choose one"):
        from_mace(model)
    with pytest.raises(MACEConversionError, match="no head 'other'"):
        from_mace(model, head="other")


def _unsupported():
    from mace.modules import RealAgnosticInteractionBlock

    return {
        "RealAgnosticInteractionBlock": dict(interaction_cls_first=RealAgnosticInteractionBlock),
        "distance_transform": dict(distance_transform="Agnesi"),
        "radial basis GaussianBasis": dict(radial_type="gaussian"),
        "use_agnostic_product": dict(use_agnostic_product=True),
        "different correlation per layer": dict(correlation=[2, 3]),
        "apply_cutoff=False": dict(apply_cutoff=False),
    }


@pytest.mark.parametrize("feature", sorted(_unsupported()))
def test_unsupported_feature_is_named(feature):
    model = build_mace(**_unsupported()[feature])
    with pytest.raises(MACEConversionError, match=feature):
        from_mace(model)


def test_other_model_classes_are_refused():
    from mace.modules import AtomicDipolesMACE

    with pytest.raises(MACEConversionError, match="model class AtomicDipolesMACE"):
        from_mace(AtomicDipolesMACE.__new__(AtomicDipolesMACE))


def test_converted_model_saves_and_reloads_equal(tmp_path):
    from mlip import models

    mace_model = build_mace(zbl=True)
    ours = from_mace(mace_model)
    ours.save(tmp_path / "ours.model")
    again = models.load(tmp_path / "ours.model", dtype=torch.float64)
    diffs = compare(mace_model, again, (1, 6, 8))
    assert max(diffs.values()) < TOL, diffs


def test_cli_convert_needs_trust_and_never_overwrites(tmp_path, capsys):
    from mlip import models
    from mlip.cli import main

    mace_model = build_mace(zbl=True)
    source, target = tmp_path / "mace.model", tmp_path / "ours.model"
    torch.save(mace_model, source)
    assert main(["convert", str(source), "-o", str(target)]) == 2
    assert "--trust" in capsys.readouterr().err and not target.exists()
    assert main(["convert", str(source), "-o", str(target), "--trust"]) == 0
    diffs = compare(mace_model, models.load(target, dtype=torch.float64), (1, 6, 8))
    assert max(diffs.values()) < TOL, diffs
    before = target.read_bytes()
    assert main(["convert", str(source), "-o", str(target), "--trust"]) == 2
    assert "--overwrite" in capsys.readouterr().err and target.read_bytes() == before
    assert main(["convert", str(source), "-o", str(target), "--trust", "--overwrite"]) == 0


def test_load_refuses_untrusted_and_non_models(tmp_path):
    path = tmp_path / "x.model"
    torch.save({"not": "a module"}, path)
    with pytest.raises(ValueError, match="trust"):
        load_mace_file(path)
    with pytest.raises(ValueError, match="not a mace-torch model module"):
        load_mace_file(path, trust=True)


@pytest.mark.parametrize("init_e0s", ["keep", "refit"])
def test_converted_model_fine_tunes(tmp_path, init_e0s):
    """A converted model is the ``init`` of a training run: the loss falls, E0s are kept, the result
    saves in our (pickle-free) format."""
    from importlib import resources

    from ase.io import read, write

    from mlip import models
    from mlip.train.config import config_from_dict
    from mlip.train.distributed import Context
    from mlip.train.trainer import Trainer

    source = resources.files("mlip") / "demo_data" / "ethanol_pbe_def2svp.extxyz"
    data = tmp_path / "ethanol.extxyz"
    with resources.as_file(source) as demo:
        write(data, read(demo, index=":24"), format="extxyz")
    frames = read(data, index=":")
    mace_model = build_mace(species=(1, 6, 8), max_ell=1, correlation=2, num_interactions=2, zbl=True)
    ours = from_mace(mace_model)
    # E0s near the data's so the random-weight model starts at a sane loss
    mean_per_atom = float(np.mean([a.get_potential_energy() / len(a) for a in frames]))
    # refit: start away from the E0s the fit gives (the mean per atom on this one-composition set)
    ours.atomic_energies_e0.e0.fill_(mean_per_atom + (0.5 if init_e0s == "refit" else 0.0))
    e0_before = ours.atomic_energies_e0.e0.clone()
    ours.save(tmp_path / "init.model")
    config = {
        "data": {"train": str(data), "valid_fraction": 0.25},
        "model": {"name": "mace", "init": str(tmp_path / "init.model"), "init_e0s": init_e0s},
        "optim": {"lr": 0.01},
        "schedule": {"kind": "constant"},
        "train": {"max_steps": 30, "batch_size": 4, "valid_every": 30, "dtype": "float64"},
        "output": {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False, "plots": False},
    }
    trainer = Trainer(config_from_dict(config), Context(0, 1, torch.device("cpu")))
    before = trainer.evaluate(trainer.valid_records)
    trainer.run()
    trainer.finish()
    after = trainer.evaluate(trainer.valid_records)
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    tuned = models.load(tmp_path / "run" / "last.model")
    if init_e0s == "keep":
        assert torch.equal(tuned.atomic_energies_e0.e0.double(), e0_before)
    else:  # the training set's E0s (auto: the mean per atom on one composition)
        fitted = torch.tensor([trainer.stats.e0[z] for z in (1, 6, 8)], dtype=torch.float64)
        assert torch.allclose(tuned.atomic_energies_e0.e0.double(), fitted)
        assert not torch.allclose(fitted, e0_before)
    assert tuned.config.pair_repulsion
