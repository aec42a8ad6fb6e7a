"""pair_style mlip (lammps/) against the eager model it was compiled from, on 1, 2 and 4 MPI ranks;
energy conservation in NVE; the LAMMPS errors for bad packages and inputs."""

from __future__ import annotations

import numpy as np
import pytest

NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/Å^3 (compute stress/atom = -NKTV2P * atom virial)

HEADER = """units metal
atom_style atomic
boundary p p p
read_data data.lmp
plugin load {plugin}
pair_style mlip
pair_coeff * * {package} {elements}
"""

SINGLE_POINT = """compute pe all pe/atom
compute sa all stress/atom NULL virial
compute v all pressure NULL virial
dump d all custom 1 dump.txt id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d format float %.17g sort id
run 0
print "RESULT $(pe:%.17g) $(vol:%.17g) $(c_v[1]:%.17g) $(c_v[2]:%.17g) $(c_v[3]:%.17g) &
$(c_v[4]:%.17g) $(c_v[5]:%.17g) $(c_v[6]:%.17g)"
"""


def _relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def eager(toy, box, h):
    """Energy, per-atom energies, forces and per-atom virial of the eager toy step on the periodic box."""
    energy, energies, forces, virial = toy.ToyStep()(*h.periodic_inputs(box, toy.R_MAX))
    return float(energy), energies.detach().numpy(), forces.detach().numpy(), virial.detach().numpy()


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_equals_eager_on_ranks(ranks, tmp_path, plugin, toy_package, box, eager, h):
    h.write_data(box, tmp_path / "data.lmp")
    text = HEADER.format(plugin=plugin, package=toy_package, elements="H C O") + SINGLE_POINT
    run = h.lammps(tmp_path, text, ranks=ranks)
    assert f"with {ranks} MPI tasks" in run.stdout or ranks == 1
    values = [float(v) for v in next(x for x in run.stdout.splitlines() if x.startswith("RESULT")).split()[1:]]
    pe, volume, pressure = values[0], values[1], np.array(values[2:])
    dump = h.read_dump(tmp_path / "dump.txt")
    energy, energies, forces, virial = eager
    voigt = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    total = virial.sum(0)
    errors = {
        "energy": abs(pe - energy) / abs(energy),
        "forces": _relative(dump[:, 1:4], forces),
        "atom energies": _relative(dump[:, 4], energies),
        "virial": _relative(pressure * volume / NKTV2P, [total[a, b] for a, b in voigt]),
        "atom virial": _relative(-dump[:, 5:] / NKTV2P, [[w[a, b] for a, b in voigt] for w in virial]),
    }
    print(ranks, "ranks:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < 1e-8, errors
