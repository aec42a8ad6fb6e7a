"""Writes the saved-model compatibility fixture of ``tests/models/test_legacy_models.py``.

Run once, with the code of commit 2b51eb3 (before issue 16's refactor), from the repository root:
``.venv/bin/python tests/models/legacy/make_legacy_models.py``. It writes one tiny float64 model file
per architecture (``<name>.safetensors``, the format of ``model.save``) and ``expected.safetensors``:
energies (eV), forces (eV/Å) and, for the periodic structure, stress (eV/Å^3) of each model in eval
mode on two fixed structures, plus the structures themselves. Existing files are kept unless ``--force``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule
from safetensors.torch import save_file

from mlip.data.atomic_data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.models import create

HERE = Path(__file__).parent
R_MAX = 3.0
SPECIES = [1, 6, 8]
COMMON = dict(r_max=R_MAX, avg_num_neighbors=4.0, e0s=[-1.0, -2.0, -3.0], scale=1.3, shift=-0.2)
CONFIGS = {
    "mace-cg": ("mace", dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=3, radial_mlp=[8])),
    "mace-gaunt": (
        "mace",
        dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=2, radial_mlp=[8], product="gaunt"),
    ),
    "nequip": ("nequip", dict(num_features=4, num_layers=2, lmax=2, radial_mlp=[8])),
    "gridnet-gaunt": ("gridnet", dict(channels=4, num_layers=2, lmax=2, num_splines=8)),
    "gridnet-swiglu": ("gridnet", dict(channels=4, num_layers=2, lmax=1, num_splines=6, mixing="swiglu")),
}


def structures() -> dict[str, Atoms]:
    """Ethanol (open boundaries) and six atoms in a skewed periodic cell (several images per pair)."""
    frac = np.array(
        [
            [0.1, 0.1, 0.1],
            [0.5, 0.2, 0.3],
            [0.2, 0.6, 0.5],
            [0.7, 0.7, 0.2],
            [0.4, 0.4, 0.8],
            [0.85, 0.3, 0.7],
        ]
    )
    cell = np.array([[3.6, 0.0, 0.0], [0.7, 3.4, 0.0], [-0.5, 0.4, 3.8]])
    box = Atoms(numbers=[1, 6, 8, 1, 6, 1], scaled_positions=frac, cell=cell, pbc=True)
    return {"ethanol": molecule("CH3CH2OH"), "box": box}


def main(force: bool) -> None:
    targets = [HERE / f"{name}.safetensors" for name in CONFIGS] + [HERE / "expected.safetensors"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise SystemExit(f"refusing to overwrite {', '.join(existing)} (pass --force)")
    expected: dict[str, torch.Tensor] = {}
    for sname, atoms in structures().items():
        expected[f"{sname}.positions"] = torch.as_tensor(atoms.positions)
        expected[f"{sname}.numbers"] = torch.as_tensor(atoms.numbers)
        expected[f"{sname}.cell"] = torch.as_tensor(np.asarray(atoms.cell))
        expected[f"{sname}.pbc"] = torch.as_tensor(atoms.pbc)
    for name, (kind, hp) in CONFIGS.items():
        model = create(kind, species=SPECIES, dtype=torch.float64, seed=0, **COMMON, **hp).eval()
        model.save(HERE / f"{name}.safetensors")
        for sname, atoms in structures().items():
            periodic = bool(atoms.pbc.any())
            out = model(add_neighbors(from_atoms(atoms), R_MAX), compute_forces=True, compute_stress=periodic)
            for key in ("energy", "forces", "stress") if periodic else ("energy", "forces"):
                expected[f"{name}.{sname}.{key}"] = out[key].detach().contiguous()
    save_file(expected, str(HERE / "expected.safetensors"))


if __name__ == "__main__":
    main("--force" in sys.argv[1:])
