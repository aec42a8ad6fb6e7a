"""Writes ``ethanol_box.data``: 64 randomly rotated ethanol molecules (576 atoms) on a 4x4x4 grid in a
periodic cubic box at the liquid's density (0.79 g/cm^3), as a LAMMPS data file with types H C O."""

import ase.io
import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

n, rng = 4, np.random.default_rng(0)
ethanol = molecule("CH3CH2OH")
mass = ethanol.get_masses().sum() * 1.66054e-24  # g
side = (n**3 * mass / 0.79) ** (1 / 3) * 1e8  # Å
box = Atoms(cell=[side] * 3, pbc=True)
for k, corner in enumerate(np.ndindex(n, n, n)):
    mol = ethanol.copy()
    mol.positions = Rotation.random(random_state=k).apply(mol.positions - mol.get_center_of_mass())
    box += Atoms(mol.numbers, mol.positions + (np.array(corner) + 0.5) * side / n)
box.wrap()
ase.io.write("ethanol_box.data", box, format="lammps-data", specorder=["H", "C", "O"], masses=True)
print(f"ethanol_box.data: {len(box)} atoms, box {side:.2f} Å")
