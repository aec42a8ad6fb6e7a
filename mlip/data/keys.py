"""Fixed key names of an ``AtomicData`` record (a ``dict[str, torch.Tensor]``).

Per structure (single record) shapes; a batch concatenates per-atom and per-edge fields and stacks
per-structure ones (see :func:`mlip.data.collate`). Units: Å, eV, eV/Å, eV/Å^3.
"""

POSITIONS = "positions"  # [N, 3] float64, Å
ATOMIC_NUMBERS = "atomic_numbers"  # [N] int64
CELL = "cell"  # [3, 3] float64, Å, rows are lattice vectors (ASE); batch: [B, 3, 3]
PBC = "pbc"  # [3] bool; batch: [B, 3]
NUM_ATOMS = "num_atoms"  # [] int64; batch: [B]
BATCH = "batch"  # batch only: [N] int64, structure index of each atom
PTR = "ptr"  # batch only: [B + 1] int64, atom offsets

# Neighbour list (added by mlip.data.neighbors): edge e goes from source edge_index[0, e] to destination
# edge_index[1, e]; its vector is positions[dst] - positions[src] + cell_shifts[e] @ cell.
EDGE_INDEX = "edge_index"  # [2, E] int64
CELL_SHIFTS = "cell_shifts"  # [E, 3] float64, integer image offsets in units of lattice vectors

# Labels (optional)
ENERGY = "energy"  # [] float64, eV (total energy); batch: [B]
FORCES = "forces"  # [N, 3] float64, eV/Å
STRESS = "stress"  # [3, 3] float64, eV/Å^3, ASE sign (positive = tensile); batch: [B, 3, 3]
ENERGY_WEIGHT = "energy_weight"  # [] float64; batch: [B]
FORCES_WEIGHT = "forces_weight"  # [] float64; batch: [B]
STRESS_WEIGHT = "stress_weight"  # [] float64; batch: [B]

# OC20 extras (optional)
TAGS = "tags"  # [N] int64: 0 subsurface slab, 1 surface slab, 2 adsorbate
FIXED = "fixed"  # [N] bool: atom held fixed in the DFT relaxation

PER_ATOM_KEYS = (POSITIONS, ATOMIC_NUMBERS, FORCES, TAGS, FIXED)
PER_STRUCTURE_KEYS = (CELL, PBC, NUM_ATOMS, ENERGY, STRESS, ENERGY_WEIGHT, FORCES_WEIGHT, STRESS_WEIGHT)
PER_EDGE_KEYS = (CELL_SHIFTS,)
