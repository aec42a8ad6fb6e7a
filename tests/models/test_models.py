"""Every registered model (tiny, float64): symmetries, forces/stress = finite differences, batching,
cutoff smoothness, float32, save/load and its errors, parameter counts vs mace-torch."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from mlip.data import keys as K
from mlip.data.atomic_data import collate
from mlip.models import ModelFileError, available, create, load
from mlip.models.io import load as load_expected
from mlip.testing import assert_potential_equivariant

SPECIES = [1, 6, 8]


def energy(kit, model, atoms) -> float:
    return float(model(kit.record(atoms), compute_forces=False)["energy"].detach())


def test_registry_lists_models(kit):
    assert {"mace", "nequip", "gridnet"} <= set(available())
    with pytest.raises(KeyError, match="unknown model 'allegro'"):
        create("allegro", species=[1])
    with pytest.raises(TypeError, match="no hyperparameter"):
        create("mace", species=[1], hiden_irreps="8x0e")


@pytest.mark.parametrize("structure", ["ethanol", "triclinic"])
def test_equivariant_and_invariant(kit, model_name, structure):
    model = kit.build(model_name)
    assert_potential_equivariant(model, kit.record(getattr(kit, structure)()), atol=1e-9)


def test_forces_and_stress_equal_finite_differences(kit, model_name):
    model = kit.build(model_name)
    h = 1e-5
    for atoms, with_stress in ((kit.ethanol(), False), (kit.triclinic(), True)):
        out = model(kit.record(atoms), compute_forces=True, compute_stress=with_stress)
        forces = out["forces"].detach().numpy()
        for atom, axis in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            numeric = -(energy(kit, model, plus) - energy(kit, model, minus)) / (2 * h)
            assert abs(forces[atom, axis] - numeric) < 1e-6 * max(1.0, abs(numeric))
        if with_stress:
            stress = out["stress"][0].detach().numpy()
            volume = atoms.get_volume()
            for i, j in [(0, 0), (1, 2), (0, 1)]:
                eps = np.zeros((3, 3))
                eps[i, j] = eps[j, i] = h / (2 if i != j else 1)
                values = []
                for sign in (1, -1):
                    strained = atoms.copy()
                    strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
                    values.append(energy(kit, model, strained))
                numeric = (values[0] - values[1]) / (2 * h) / volume
                assert abs(stress[i, j] - numeric) < 1e-6 * max(1.0, abs(numeric))


def test_batched_equals_single(kit, model_name):
    model = kit.build(model_name)
    records = [kit.record(kit.ethanol()), kit.record(kit.triclinic())]
    batched = model(collate(records), compute_forces=True, compute_stress=False)
    forces = []
    for i, r in enumerate(records):
        single = model(r, compute_forces=True)
        torch.testing.assert_close(batched["energy"][i], single["energy"][0], atol=1e-10, rtol=0)
        forces.append(single["forces"])
    torch.testing.assert_close(batched["forces"], torch.cat(forces), atol=1e-10, rtol=0)


def test_edges_beyond_cutoff_contribute_nothing(kit, model_name):
    model = kit.build(model_name)
    atoms = kit.triclinic()
    tight, skin = kit.record(atoms), kit.record(atoms, cutoff=kit.R_MAX + 1.0)
    assert skin[K.EDGE_INDEX].shape[1] > tight[K.EDGE_INDEX].shape[1]
    a, b = model(tight), model(skin)
    torch.testing.assert_close(a["energy"], b["energy"], atol=1e-12, rtol=0)
    torch.testing.assert_close(a["forces"], b["forces"], atol=1e-12, rtol=0)


def test_e0_shift_and_per_atom_energies(kit, model_name):
    with_e0 = kit.build(model_name)
    without = kit.build(model_name, e0s=[0.0, 0.0, 0.0])
    data = kit.record(kit.ethanol())
    a, b = with_e0(data), without(data)
    numbers = data[K.ATOMIC_NUMBERS]
    shift = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)[[SPECIES.index(int(z)) for z in numbers]]
    torch.testing.assert_close(a["energies"], b["energies"] + shift)
    torch.testing.assert_close(a["energy"], a["energies"].sum().reshape(1))


def test_float32_close_to_float64(kit, model_name):
    data = kit.record(kit.ethanol())
    e64 = kit.build(model_name)(data)["energy"].detach()
    e32 = kit.build(model_name, dtype=torch.float32)(data)["energy"].detach()
    assert e32.dtype == torch.float32
    assert abs(float(e32) - float(e64)) < 1e-4 * max(1.0, abs(float(e64)))


def test_save_load_identical(kit, model_name, tmp_path):
    model = kit.build(model_name)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load(path)
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.species == SPECIES
    data = kit.record(kit.triclinic())
    a, b = model(data, compute_stress=True), loaded(data, compute_stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.equal(a[key], b[key])
    assert load(path, dtype=torch.float32).dtype == torch.float32


def test_load_errors(kit, tmp_path):
    model = kit.build("nequip")
    path = tmp_path / "nequip.safetensors"
    model.save(path)
    with pytest.raises(ModelFileError, match="holds a 'nequip' model, not 'mace'"):
        load_expected(path, expected="mace")
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable mlip model file"):
        load(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        load(truncated)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="without mlip model metadata"):
        load(foreign)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config["num_features"] = 5  # weights no longer fit the config
    meta["config"] = json.dumps(config)
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(tensors, str(mismatched), metadata=meta)
    with pytest.raises(ModelFileError, match="weights do not match"):
        load(mismatched)


def test_parameter_count_equals_mace_torch(kit):
    pytest.importorskip("mace.modules")
    from e3nn import o3
    from mace.modules import MACE, RealAgnosticResidualInteractionBlock

    hp = dict(hidden_irreps="16x0e+16x1o", max_ell=2, correlation=3, num_interactions=2, radial_mlp=[16, 16])
    peer = MACE(
        r_max=4.0,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=RealAgnosticResidualInteractionBlock,
        interaction_cls_first=RealAgnosticResidualInteractionBlock,
        num_interactions=2,
        num_elements=3,
        hidden_irreps=o3.Irreps("16x0e+16x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(3),
        avg_num_neighbors=8.0,
        atomic_numbers=SPECIES,
        correlation=3,
        gate=torch.nn.functional.silu,
        radial_MLP=[16, 16],
    )
    expected = sum(p.numel() for p in peer.parameters() if p.requires_grad)
    if importlib.util.find_spec("cuequivariance"):  # mace-torch then builds its reduced CG basis with it
        assert create("mace", species=SPECIES, sc_basis="reduced", **hp).num_parameters() == expected
    else:
        assert create("mace", species=SPECIES, sc_basis="paths", **hp).num_parameters() == expected
        assert create("mace", species=SPECIES, **hp).num_parameters() < expected  # reduced basis


def test_unknown_species_rejected(kit):
    from ase import Atoms

    from mlip.data.atomic_data import DataError

    model = kit.build("nequip")
    atoms = Atoms("HN", positions=[[0, 0, 0], [0, 0, 1.0]])
    with pytest.raises(DataError, match="element N"):
        model(kit.record(atoms))


def test_backend_torch_equals_triton_interpreter(kit):
    """One model through the Triton tp_conv (interpreter on the CPU: tiny); the kernels' own tests cover
    every descriptor."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1 set before it is imported")
    from ase.build import molecule

    data = kit.record(molecule("H2O"))
    ref = kit.build("mace-cg", backend="torch", num_interactions=1)(data)
    tri = kit.build("mace-cg", backend="triton", num_interactions=1)(data)
    torch.testing.assert_close(tri["energy"], ref["energy"], atol=1e-9, rtol=0)
    torch.testing.assert_close(tri["forces"], ref["forces"], atol=1e-9, rtol=0)


def test_chunked_inference_equals_autograd_path(kit, model_name, monkeypatch):
    import mlip.layers.chunking as chunking
    from mlip.kernels.tp_conv import torch_fast as conv

    monkeypatch.setattr(conv, "EDGES_PER_CHUNK", 16)
    monkeypatch.setitem(chunking.ROWS_PER_CHUNK, "cpu", 3)  # node-wise layers checkpointed in chunks
    model = kit.build(model_name)
    data = kit.record(kit.triclinic())
    plain = model.train()(data, compute_stress=True, create_graph=False)
    chunked = model.eval()(data, compute_stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(chunked[key], plain[key], atol=1e-12, rtol=0)
    grads = []
    for mode in (True, False):  # weight gradients agree too
        model.train(mode)
        model.zero_grad()
        model(data, compute_forces=False)["energy"].sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)


# ATen ops of one energy+forces step of the tiny models (float32, ethanol) when this budget was set:
# each is about one kernel launch on a GPU, where these models are bound by launches at small sizes.
# Raised by ~30 (issue 23) for the CPU convolution's per-run GEMMs (kernels/tensor_product/torch_fast.py),
# which made its CPU passes 1.3-3x faster; CUDA runs the Triton convolution, whose op count is unchanged.
OP_BUDGET = {"mace-cg": 427, "mace-gaunt": 419, "nequip": 419, "gridnet": 472}


def test_energy_forces_step_stays_within_its_op_budget(kit, model_name):
    """A change that adds ATen ops to every step (a slice per block whose backward zero-fills the whole
    input, a recurrence unrolled into tensors, ...) fails here; raise the budget only deliberately."""
    from mlip.benchmarking import count_aten_ops

    model = kit.build(model_name, dtype=torch.float32).eval()
    data = kit.record(kit.ethanol())
    model(data)  # constant tables built and cached
    assert count_aten_ops(lambda: model(data)) <= OP_BUDGET[model_name] + 10


def test_model_builds_the_neighbour_list_of_data_without_edges(kit):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from mlip.data.atomic_data import from_rdkit
    from mlip.data.neighbors import add_neighbors

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    data = from_rdkit(mol)
    assert K.EDGE_INDEX not in data
    model = kit.build("nequip")
    out = model(data)
    ref = model(add_neighbors(data, model.cutoff))
    assert torch.equal(out["energy"], ref["energy"]) and torch.equal(out["forces"], ref["forces"])
    assert out["energy"].abs().item() > 0
