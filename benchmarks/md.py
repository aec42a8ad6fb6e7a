"""MD with a trained rMD17 ethanol MACE: throughput of the native batched driver vs ASE loops, and NVE drift.

``--model`` is a model file written by ``mlip train`` (e.g. a small mace trained on the 1000 ethanol
configurations of rMD17 split 01; keep it out of git). The molecule is frame 0 of rMD17 ethanol test_01
(``--rmd17`` folder); the boxes are ethanol molecules on a cubic grid (random orientations, periodic).

Throughput (default mode), per system (1, 16, 128 replicas of ethanol; a 999-atom box of 111 molecules),
atom-steps/s and ns/day of three routes doing velocity Verlet, timed with :func:`mlip.benchmarking.measure`
over ``--steps`` steps after one warm-up call:

* ``native``: ``mlip.md`` with all replicas in one batch (``ForceField``, 1 Å skin);
* ``ase_ours``: ``ase.md.VelocityVerlet`` replica after replica with :class:`mlip.calculator.MLIPCalculator`;
* ``ase_mace_torch``: the same loop with mace-torch's ``MACECalculator`` around a mace-torch ``MACE`` of
  the same hyperparameters (untrained weights: the cost does not depend on them); absent if mace-torch
  does not import;
* ``torchsim_ours``: torch-sim's NVE (velocity Verlet) on one batched state of all replicas, driving our
  model through :class:`mlip.interop.torch_sim.TorchSimModel` (our neighbour list, rebuilt every step);
* ``torchsim_mace_torch``: the same with torch-sim's own ``MaceModel`` around the mace-torch ``MACE``
  (torch-sim's Vesin neighbour list); the torch-sim routes are absent if torch-sim does not import.

``--drift``: NVE at ``--temperature`` (500 K) for ``--drift-ps`` ps of 0.5 fs in ``--dtype``, in one batch:
``--drift-replicas`` ethanol molecules (different velocities) and a periodic box of 8 molecules whose
intermolecular neighbours cross the 5 Å cutoff (the model, not LJ). Reports the drift (meV/atom/ps,
slope after 10 % equilibration), the neighbour-list rebuilds, and plots the total energy (PNG).
Each mode prints a table and writes JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.md.verlet import VelocityVerlet

from mlip import md, models
from mlip.benchmarking import measure, print_table, write_json
from mlip.calculator import MLIPCalculator
from mlip.md.units import FS

RMD17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17"
RESULTS = Path(__file__).resolve().parent / "results"


def ethanol(folder: Path) -> Atoms:
    """Frame 0 of rMD17 ethanol test_01 (9 atoms, Å)."""
    data = np.load(folder / "rmd17_ethanol_test_01.npz")
    return Atoms(numbers=data["nuclear_charges"], positions=data["coords"][0])


def molecule_box(molecule: Atoms, count: int, spacing: float, seed: int = 0) -> Atoms:
    """``count`` randomly rotated copies of ``molecule`` centred on a cubic grid of ``spacing`` Å, in the
    smallest periodic cubic cell holding the grid."""
    side = int(np.ceil(count ** (1 / 3) - 1e-9))
    rng = np.random.default_rng(seed)
    box = Atoms(cell=[side * spacing] * 3, pbc=True)
    centred = molecule.copy()
    centred.translate(-centred.get_center_of_mass())
    for index in range(count):
        part = centred.copy()
        part.rotate(rng.uniform(0, 360), rng.normal(size=3))
        part.translate((np.array(np.unravel_index(index, (side,) * 3)) + 0.5) * spacing)
        box += part
    return box


def mace_torch_model(config: Any, dtype: torch.dtype) -> Any:
    """An untrained mace-torch ``MACE`` with the hyperparameters of our
    :class:`~mlip.models.mace.MACEConfig` ``config``; ``None`` when mace-torch does not import."""
    try:
        from e3nn import o3
        from mace.modules import MACE, RealAgnosticResidualInteractionBlock
    except Exception as exc:  # noqa: BLE001 - any import failure means the peer is absent
        print(f"mace-torch unavailable: {exc}")
        return None
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = MACE(
            r_max=config.r_max,
            num_bessel=config.num_bessel,
            num_polynomial_cutoff=config.num_polynomial_cutoff,
            max_ell=config.max_ell,
            interaction_cls=RealAgnosticResidualInteractionBlock,
            interaction_cls_first=RealAgnosticResidualInteractionBlock,
            num_interactions=config.num_interactions,
            num_elements=len(config.species),
            hidden_irreps=o3.Irreps(config.hidden_irreps),
            MLP_irreps=o3.Irreps(config.mlp_irreps),
            atomic_energies=np.zeros(len(config.species)),
            avg_num_neighbors=config.avg_num_neighbors,
            atomic_numbers=config.species,
            correlation=config.correlation,
            gate=torch.nn.functional.silu,
            radial_MLP=list(config.radial_mlp),
        )
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype)


def mace_torch_calculator(model: Any, dtype: torch.dtype, device: str) -> Any:
    """A factory of mace-torch ``MACECalculator`` s around ``model``; ``None`` without a model."""
    if model is None:
        return None
    from mace.calculators import MACECalculator

    name = str(dtype).removeprefix("torch.")
    return lambda: MACECalculator(models=model, device=device, default_dtype=name)


def torch_sim_models(model: torch.nn.Module, peer: Any, dtype: torch.dtype, device: str) -> dict[str, Any]:
    """torch-sim ``ModelInterface`` s: ours around ``model``, torch-sim's ``MaceModel`` around ``peer``
    (when given); empty when torch-sim does not import."""
    try:
        from mlip.interop.torch_sim import TorchSimModel
    except ImportError as exc:
        print(f"torch-sim unavailable: {exc}")
        return {}
    out = {"torchsim_ours": TorchSimModel(model, device=device, dtype=dtype, compute_stress=False)}
    if peer is not None:
        from torch_sim.models.mace import MaceModel

        out["torchsim_mace_torch"] = MaceModel(
            model=peer, device=torch.device(device), dtype=dtype, compute_stress=False
        )
    return out


def torch_sim_run(atoms: Atoms, replicas: int, model: Any, steps: int, dt: float) -> Callable[[], Any]:
    """A function running ``steps`` torch-sim NVE steps of all replicas in one batched state (state kept)."""
    import torch_sim as ts
    from torch_sim.units import UnitSystem

    metal = UnitSystem.metal  # time in ps
    state = ts.io.atoms_to_state([atoms] * replicas, model.device, model.dtype)
    init_fn, update_fn = ts.nve(
        model,
        dt=torch.tensor(dt * 1e-3 * metal.time, dtype=model.dtype, device=model.device),
        kT=torch.tensor(300.0 * metal.temperature, dtype=model.dtype, device=model.device),
        seed=0,
    )
    holder = [init_fn(state)]

    def run() -> None:
        for _ in range(steps):
            holder[0] = update_fn(holder[0])

    return run


def native_run(
    atoms: Atoms, replicas: int, model: torch.nn.Module, steps: int, dt: float, device: str
) -> Callable[[], Any]:
    """A function running ``steps`` native NVE steps of all replicas in one batch (state kept)."""
    state = md.from_atoms([atoms] * replicas, device=device, seed=0)
    md.maxwell_boltzmann(state, 300.0)
    ff = md.ForceField(model, skin=1.0)
    md.nve.init(state, ff)
    return lambda: md.simulate(state, ff, md.nve.step, steps=steps, dt=dt, log_interval=steps)


def ase_run(
    atoms: Atoms, replicas: int, calculator: Callable[[], Any], steps: int, dt: float
) -> Callable[[], Any]:
    """A function running ``steps`` ASE velocity-Verlet steps of each replica in turn (own calculators)."""
    dynamics = []
    for b in range(replicas):
        state = md.from_atoms(atoms, seed=b)
        md.maxwell_boltzmann(state, 300.0)
        copy = md.to_atoms(state)[0]
        copy.calc = calculator()
        dynamics.append(VelocityVerlet(copy, timestep=dt * FS))
    return lambda: [dyn.run(steps) for dyn in dynamics]


def throughput(args: argparse.Namespace) -> None:
    dtype = getattr(torch, args.dtype)
    model = models.load(args.model, dtype=dtype).eval().requires_grad_(False).to(args.device)
    molecule = ethanol(args.rmd17)
    peer = mace_torch_model(model.config, dtype)
    routes: dict[str, Callable[[], Any] | None] = {
        "ase_ours": lambda: MLIPCalculator(model, device=args.device, dtype=dtype, skin=1.0),
        "ase_mace_torch": mace_torch_calculator(peer, dtype, args.device),
    }
    sim_models = torch_sim_models(model, peer, dtype, args.device)
    systems = [("ethanol", molecule, r) for r in args.replicas]
    systems.append(("box999", molecule_box(molecule, 111, 4.8), 1))
    rows = []
    for name, atoms, replicas in systems:
        atom_steps = len(atoms) * replicas * args.steps
        row: dict[str, Any] = {"system": name, "replicas": replicas, "atoms": len(atoms) * replicas}
        timings = {
            "native": measure(
                native_run(atoms, replicas, model, args.steps, args.dt, args.device), args.repeats, 1
            )
        }
        for route, calculator in routes.items():
            if calculator is not None:
                timings[route] = measure(
                    ase_run(atoms, replicas, calculator, args.steps, args.dt), args.repeats, 1
                )
        for route, sim_model in sim_models.items():
            timings[route] = measure(
                torch_sim_run(atoms, replicas, sim_model, args.steps, args.dt), args.repeats, 1
            )
        for route, seconds in timings.items():
            row[f"{route}_atom_steps_s"] = atom_steps / seconds
            row[f"{route}_ns_day"] = args.steps * args.dt * 1e-6 / seconds * 86400
        for route in timings.keys() - {"native"}:
            row[f"speedup_vs_{route}"] = timings[route] / timings["native"]
        rows.append(row)
        print_table([row])
    print_table(rows)
    write_json(
        args.out or RESULTS / "md.json",
        "md",
        rows,
        device=args.device,
        model=str(args.model),
        dtype=args.dtype,
        steps=args.steps,
        dt_fs=args.dt,
    )


def drift(args: argparse.Namespace) -> None:
    dtype = getattr(torch, args.dtype)
    model = models.load(args.model, dtype=dtype).eval().requires_grad_(False)
    molecule = ethanol(args.rmd17)
    box = molecule_box(molecule, 8, 4.8, seed=1)
    systems = [molecule] * args.drift_replicas + [box]
    names = [f"ethanol#{b}" for b in range(args.drift_replicas)] + ["box72 (pbc)"]
    state = md.from_atoms(systems, seed=0)
    md.maxwell_boltzmann(state, args.temperature)
    ff = md.ForceField(model, skin=1.0)
    md.nve.init(state, ff)
    steps = round(args.drift_ps * 1000 / args.dt)
    start = time.perf_counter()
    result = md.simulate(
        state, ff, md.nve.step, steps, args.dt, log_interval=args.log_interval, guard=md.ExplosionGuard()
    )
    wall = time.perf_counter() - start
    slopes = result.log.drift(state.num_atoms).tolist()  # meV/atom/ps
    total = result.log.series("total")  # [T, B] eV
    spread = ((total.max(0).values - total.min(0).values) / state.num_atoms * 1000).tolist()  # meV/atom
    temperature = result.log.series("temperature").mean(0).tolist()
    rows = [
        {
            "system": name,
            "dtype": args.dtype,
            "atoms": len(atoms),
            "ps": result.state.time / 1000,
            "mean_T_K": t,
            "drift_meV_atom_ps": d,
            "range_meV_atom": s,
        }
        for name, atoms, d, s, t in zip(names, systems, slopes, spread, temperature, strict=True)
    ]
    print_table(rows)
    print(f"{steps} steps in {wall:.0f} s; neighbour-list builds {ff.neighbors.builds}")
    stem = f"md_drift_{args.dtype}"
    plot_drift(
        result.log,
        state.num_atoms,
        names,
        RESULTS / f"{stem}.png",
        f"NVE {args.temperature:.0f} K, {args.dtype}",
    )
    write_json(
        RESULTS / f"{stem}.json",
        "md_drift",
        rows,
        model=str(args.model),
        dt_fs=args.dt,
        steps=steps,
        neighbor_builds=ff.neighbors.builds,
        wall_s=wall,
    )


def plot_drift(log: md.EnergyLog, num_atoms: torch.Tensor, names: list[str], path: Path, title: str) -> None:
    """Total energy minus its initial value (meV/atom) against time (ps), one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = log.series("total")
    shifted = ((total - total[0]) / num_atoms.to(total.dtype) * 1000).numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    for b, name in enumerate(names):
        ax.plot(np.asarray(log.time) * 1e-3, shifted[:, b], label=name, lw=0.8)
    ax.set(xlabel="time (ps)", ylabel="E_total - E_total(0) (meV/atom)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="model file from mlip train (ethanol)")
    parser.add_argument("--rmd17", type=Path, default=RMD17, help="folder with rmd17_ethanol_test_01.npz")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--device", default="cpu", help="torch device of every route (throughput)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (throughput; default results/md.json)"
    )
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per call (throughput)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per route (median)")
    parser.add_argument("--drift", action="store_true", help="NVE drift mode instead of throughput")
    parser.add_argument("--drift-ps", type=float, default=10.0, help="NVE length, ps")
    parser.add_argument("--drift-replicas", type=int, default=2, help="ethanol molecules in the drift batch")
    parser.add_argument("--temperature", type=float, default=500.0, help="initial temperature, K (drift)")
    parser.add_argument("--log-interval", type=int, default=10, help="steps between logged energies (drift)")
    args = parser.parse_args()
    (drift if args.drift else throughput)(args)


if __name__ == "__main__":
    main()
