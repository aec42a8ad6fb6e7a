"""pair_style mlip (lammps/) against the eager model it was compiled from, on 1, 2 and 4 MPI ranks;
energy conservation in NVE; the LAMMPS errors for bad packages and inputs.

The skin is 0.5 Å so that the halo matters: with a one-layer halo (r_max + skin = 3.5 Å instead of
2 r_max + skin) the 2-rank energy of the toy box is off by 1.3e-5 relative (measured), far above 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/Å^3 (compute stress/atom = -NKTV2P * atom virial)

HEADER = """units metal
atom_style atomic
boundary p p p
read_data data.lmp
neighbor 0.5 bin
neigh_modify every 1 delay 0 check yes
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


def _errors_vs_eager(tmp_path, plugin, package, box, eager, h, ranks: int) -> dict[str, float]:
    """Relative errors of one LAMMPS single point (``package`` on ``ranks`` ranks) against ``eager``."""
    h.write_data(box, tmp_path / "data.lmp")
    text = HEADER.format(plugin=plugin, package=package, elements="H C O") + SINGLE_POINT
    run = h.lammps(tmp_path, text, ranks=ranks)
    assert f"with {ranks} MPI tasks" in run.stdout or ranks == 1
    values = [
        float(v) for v in next(x for x in run.stdout.splitlines() if x.startswith("RESULT")).split()[1:]
    ]
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
    return errors


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_equals_eager_on_ranks(ranks, tmp_path, plugin, toy_package, box, eager, h):
    errors = _errors_vs_eager(tmp_path, plugin, toy_package, box, eager, h, ranks)
    assert max(errors.values()) < 1e-8, errors


def test_float32_package(tmp_path, plugin, toy, box, eager, h):
    """A float32 package runs too (LAMMPS' float64 positions cast down); float32 accuracy vs float64."""
    import torch

    package = toy.export(tmp_path / "toy32.pt2", dtype=torch.float32)
    errors = _errors_vs_eager(tmp_path, plugin, package, box, eager, h, ranks=2)
    assert max(errors.values()) < 1e-5, errors
    assert max(errors.values()) > 1e-12  # it did run in float32


def test_nve_conserves_energy(tmp_path, plugin, toy_package, box, h):
    """1 ps of NVE (0.5 fs steps, 300 K) on 2 ranks: the fitted drift of the total energy."""
    h.write_data(box, tmp_path / "data.lmp")
    text = HEADER.format(plugin=plugin, package=toy_package, elements="H C O") + (
        "velocity all create 300 4928459 mom yes rot yes\n"
        "fix 1 all nve\ntimestep 0.0005\n"
        "thermo_style custom step etotal\nthermo_modify format float %.17g\nthermo 20\nrun 2000\n"
    )
    run = h.lammps(tmp_path, text, ranks=2)
    lines = run.stdout.splitlines()
    start = next(i for i, x in enumerate(lines) if x.split() == ["Step", "TotEng"]) + 1
    rows = np.array([[float(v) for v in x.split()] for x in lines[start : start + 101]])
    assert rows[-1, 0] == 2000
    slope = np.polyfit(rows[:, 0] * 0.0005, rows[:, 1], 1)[0]  # eV / ps
    drift = 1000 * slope / len(box)
    print(f"NVE drift {drift:.2e} meV/atom/ps, total energy spread {np.ptp(rows[:, 1]):.2e} eV")
    assert abs(drift) <= 0.01


def test_npt_runs_on_the_virial(tmp_path, plugin, toy_package, box, h):
    """fix npt on 2 ranks (the pair style's virial drives the barostat): the box relaxes toward 1 bar
    from the toy box's 44 kbar, i.e. it expands."""
    h.write_data(box, tmp_path / "data.lmp")
    text = HEADER.format(plugin=plugin, package=toy_package, elements="H C O") + (
        "velocity all create 300 4928459 mom yes rot yes\ntimestep 0.0005\n"
        "fix 1 all npt temp 300 300 0.05 iso 1.0 1.0 0.5\n"
        'run 200\nprint "VOLUME $(vol:%.10g) $(press:%.10g)"\n'
    )
    run = h.lammps(tmp_path, text, ranks=2)
    volume = float(next(x for x in run.stdout.splitlines() if x.startswith("VOLUME")).split()[1])
    assert volume > 1.01 * box.get_volume()


def _bad_package(kind: str, package, tmp_path, h):
    if kind == "missing":
        return tmp_path / "absent.pt2"
    if kind == "corrupt":
        (tmp_path / "corrupt.pt2").write_bytes(b"PK\x03\x04 not really a zip archive")
        return tmp_path / "corrupt.pt2"
    field, value = {
        "cuda": ("device", "cuda"),
        "float16": ("dtype", "float16"),
        "torch": ("torch_version", "2.5.1"),
    }[kind]
    return h.with_metadata(package, tmp_path / f"{kind}.pt2", **{field: value})


@pytest.mark.parametrize(
    "case, message",
    [
        ("element", "element N (type 3) is not in the species of"),
        ("units", "pair_style mlip requires 'units metal'"),
        ("newton", "requires newton_pair on"),
        ("missing", "cannot open model package"),
        ("corrupt", "is not a readable .pt2 package"),
        ("cuda", "device 'cuda', but no CUDA device"),
        ("float16", "dtype 'float16' is not supported"),
        ("torch", "torch_version '2.5.1' differs"),
    ],
)
def test_errors(case, message, tmp_path, plugin, toy_package, box, h):
    if case == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine can run a CUDA package")
    h.write_data(box, tmp_path / "data.lmp")
    package = toy_package
    if case in ("missing", "corrupt", "cuda", "float16", "torch"):
        package = _bad_package(case, toy_package, tmp_path, h)
    text = HEADER.format(plugin=plugin, package=package, elements="H C N" if case == "element" else "H C O")
    if case == "units":
        text = text.replace("units metal", "units real")
    if case == "newton":
        text = "newton off\n" + text
    run = h.lammps(tmp_path, text + "run 0\n", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    line = next((x for x in output.splitlines() if x.startswith("ERROR")), "")
    assert message in line, output[-2000:]
    print(line)
    if case not in ("units", "newton"):
        assert package.name in line  # the error names the file
