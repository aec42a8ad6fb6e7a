"""Energy+forces per MD step: our models vs mace-torch with the same hyperparameters, same process.

Systems: one water molecule (3 atoms: the time is all host overhead), aspirin (21 atoms, a fixed rdkit
conformer), periodic water boxes of ~100, ~1000 and ~10k atoms (density 0.1 atoms/Å^3, ~50 neighbours
within 5 Å). Models: our ``mace`` (``product="cg"`` and ``"gaunt"``), ``nequip``, ``gridnet``, each also
as ``NAME-compiled`` (its ``mlip compile`` AOTInductor package, compiled once per process in the
benchmark's dtype; ``compile_s`` is that compile time, ``speedup_vs_eager`` the ratio to the eager row of
the same run, ``paired_vs_eager`` / ``paired_vs_mace_torch`` the median ratio over rounds that time the
compiled step and the peer back to back: the figure to trust on a shared, noisy machine), and
mace-torch's ``ScaleShiftMACE`` (as its training script builds it; 128x0e+128x1o, max_ell 3,
correlation 3, 2 interactions, r_max 5, radial MLP [64, 64, 64]), fed the same neighbour list.
``mace-torch-mp-medium`` / ``mace-from-mp-medium``: a MACE-MP-0 "medium"-shaped mace-torch model (89
elements, r_max 6 Å, random weights) and ours converted from it by :func:`mlip.models.from_mace`, on a
neighbour list at 6 Å.

Reported per (model, system): median time of one energy+forces evaluation, steps/s, ns/day at 0.5 fs,
time per atom (constant from 100 to 10k atoms when the cost is linear in the system size), and peak
memory (CUDA: max allocated; CPU: peak RSS of a fresh child process running the same case, minus its
footprint after imports).
Before timing, our mace and mace-torch are checked to produce finite energies and forces, and
``mace-torch-cueq`` (mace-torch converted to cuEquivariance by mace's converter) to match the e3nn
model it was converted from. ``first_call_s`` is the time to build the model and run its first step (on
a GPU mostly kernel compilation and autotuning), apart from the steady-state timing. ``aten_ops``: ATen
ops one step dispatches (views and allocations excluded; about one GPU kernel launch each, so a measure of
host overhead on any machine; our Triton kernels are launched outside ATen and not counted).

    python benchmarks/model.py [--quick] [--device cuda] [--dtype float32] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlip.benchmarking import count_aten_ops, measure, peak_memory, print_table, write_json
from mlip.data import keys as K
from mlip.data.atomic_data import from_atoms
from mlip.data.neighbors import add_neighbors

SPECIES = [1, 6, 7, 8]
R_MAX = 5.0
MACE_HP = dict(hidden_irreps="128x0e+128x1o", max_ell=3, correlation=3, num_interactions=2, r_max=R_MAX)
OURS = {
    "mace": ("mace", MACE_HP),
    "mace-gaunt": ("mace", {**MACE_HP, "product": "gaunt"}),
    "nequip": ("nequip", {"r_max": R_MAX}),
    "gridnet": ("gridnet", {"r_max": R_MAX}),
}
FS_PER_STEP = 0.5
# MACE-MP-0 "medium": ScaleShiftMACE, 89 elements (Z 1-83, 89-94), r_max 6 Å; random weights here
MP_MEDIUM = dict(
    r_max=6.0,
    hidden_irreps="128x0e+128x1o",
    max_ell=3,
    correlation=3,
    num_interactions=2,
    species=[*range(1, 84), *range(89, 95)],
)
CONVERTED = ("mace-torch-mp-medium", "mace-from-mp-medium")  # mace-torch model, and ours converted from it
COMPILED = "-compiled"  # model-name suffix: the model's mlip compile package (AOTInductor .pt2)


# aspirin C9H8O4, an rdkit (ETKDG, seed 0) conformer: (Z, x, y, z) in Å
ASPIRIN = (
    (6, 3.1376, 1.2039, -0.8272),
    (6, 1.9794, 0.4676, -0.2746),
    (8, 2.0768, 0.1016, 0.9454),
    (8, 0.8345, 0.1702, -1.0026),
    (6, -0.1544, -0.5384, -0.2945),
    (6, -0.1442, -1.9191, -0.2997),
    (6, -1.1339, -2.6022, 0.4089),
    (6, -2.0987, -1.8619, 1.0976),
    (6, -2.0976, -0.4815, 1.0948),
    (6, -1.1114, 0.1993, 0.3887),
    (6, -1.1257, 1.6583, 0.3967),
    (8, -0.1924, 2.2184, -0.2714),
    (8, -2.0791, 2.4054, 1.0773),
    (1, 2.8843, 2.0735, -1.4394),
    (1, 3.7692, 0.4533, -1.3535),
    (1, 3.7735, 1.5337, 0.0446),
    (1, 0.6281, -2.4626, -0.8510),
    (1, -1.1349, -3.6862, 0.4113),
    (1, -2.8917, -2.3662, 1.6653),
    (1, -2.8716, 0.0159, 1.6474),
    (1, -2.0478, 3.4173, 1.0534),
)


def aspirin():
    from ase import Atoms

    return Atoms(numbers=[row[0] for row in ASPIRIN], positions=[row[1:] for row in ASPIRIN])


def water_box(num_atoms: int, seed: int = 0):
    """Periodic box of ``num_atoms // 3`` water molecules on a jittered cubic lattice, 0.1 atoms/Å^3."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    n_mol = max(1, num_atoms // 3)
    k = math.ceil(n_mol ** (1 / 3))
    spacing = (3 / 0.1) ** (1 / 3)  # 3 atoms per molecule at 0.1 atoms/Å^3
    sites = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    water = molecule("H2O")
    positions, numbers = [], []
    for site in sites:
        w = water.copy()
        w.rotate(rng.uniform(0, 360), rng.normal(size=3))
        positions.append(w.positions + (site + 0.5) * spacing + rng.normal(scale=0.1, size=3))
        numbers += list(w.numbers)
    length = k * spacing
    return Atoms(numbers=numbers, positions=np.concatenate(positions), cell=[length] * 3, pbc=True)


def systems(quick: bool) -> dict:
    from ase.build import molecule

    out = {"water-3": molecule("H2O"), "aspirin": aspirin(), "box-100": water_box(100)}
    out["box-1000"] = water_box(1000)
    if not quick:
        out["box-10k"] = water_box(10000)
    return out


def ours(name: str, dtype: torch.dtype, device: str):
    from mlip.models import create

    kind, hp = OURS[name]
    return create(kind, species=SPECIES, dtype=dtype, device=device, seed=0, avg_num_neighbors=40.0, **hp)


def mace_torch(dtype: torch.dtype, device: str, species: list[int] = SPECIES, r_max: float = R_MAX):
    from e3nn import o3
    from mace.modules import RealAgnosticResidualInteractionBlock, ScaleShiftMACE

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        model = ScaleShiftMACE(
            r_max=r_max,
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=3,
            interaction_cls=RealAgnosticResidualInteractionBlock,
            interaction_cls_first=RealAgnosticResidualInteractionBlock,
            num_interactions=2,
            num_elements=len(species),
            hidden_irreps=o3.Irreps("128x0e+128x1o"),
            MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(len(species)),
            avg_num_neighbors=40.0,
            atomic_numbers=species,
            correlation=3,
            gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64],
            atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype)


def mace_torch_cueq(dtype: torch.dtype, device: str, data):
    """mace-torch's model converted to cuEquivariance (mace's own converter: ``ir_mul`` layout, fused
    convolution on CUDA), checked against the e3nn model it was converted from on ``data``."""
    from mace.cli.convert_e3nn_cueq import run as to_cueq

    source = mace_torch(dtype, device).requires_grad_(False).eval()
    previous = torch.get_default_dtype()
    try:
        model = to_cueq(source, device=device, return_model=True).to(dtype).requires_grad_(False).eval()
    finally:
        torch.set_default_dtype(previous)
    expected, got = mace_torch_step(source, data, dtype)(), mace_torch_step(model, data, dtype)()
    tolerance = 1e-3 if dtype == torch.float32 else 1e-8
    for name, a, b in zip(("energy", "forces"), expected, got, strict=True):
        if not torch.allclose(a, b, rtol=tolerance, atol=tolerance):
            raise AssertionError(f"mace-torch-cueq {name} differs from mace-torch: {(a - b).abs().max():.3g}")
    return model


_PACKAGES: dict[tuple[str, str, str], tuple[str, float]] = {}
_PACKAGE_DIR = tempfile.TemporaryDirectory(prefix="mlip-bench-")


def compiled(name: str, dtype: torch.dtype, device: str):
    """Our model ``name`` as a ``.pt2`` package (``mlip compile``), compiled once per process; returns the
    loaded :class:`~mlip.compile.CompiledModel` and the compile time (s) of its package."""
    from mlip.compile import CompiledModel, compile_package

    key = (name, str(dtype), device)
    if key not in _PACKAGES:
        path = str(Path(_PACKAGE_DIR.name) / f"{name}-{len(_PACKAGES)}.pt2")
        _PACKAGES[key] = (path, compile_package(ours(name, dtype, device), path, device=device))
    path, seconds = _PACKAGES[key]
    return CompiledModel(path, device=device), seconds


def our_step(model, data):
    def step():
        out = model(data, compute_forces=True)
        return out["energy"].detach(), out["forces"].detach()

    return step


def mace_torch_step(model, data, dtype: torch.dtype):
    from mlip.interop.mace import mace_inputs

    species = [int(z) for z in model.atomic_numbers]
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in mace_inputs(data, species).items()}

    def step():
        out = model(batch, compute_force=True, training=False)
        return out["energy"].detach(), out["forces"].detach()

    return step


def converted_pair(model_name: str, dtype: torch.dtype, device: str, data):
    """``mace-torch-mp-medium`` (mace-torch, MACE-MP-0 medium shape, random weights) or our model
    converted from it (``mace-from-mp-medium``), checked equal to mace-torch on ``data`` first."""
    from mlip.interop.mace import from_mace

    peer = mace_torch(dtype, device, MP_MEDIUM["species"], MP_MEDIUM["r_max"]).requires_grad_(False).eval()
    if model_name == CONVERTED[0]:
        return mace_torch_step(peer, data, dtype)
    model = from_mace(peer).to(device=device, dtype=dtype).requires_grad_(False).eval()
    expected, got = mace_torch_step(peer, data, dtype)(), our_step(model, data)()
    tolerance = 1e-3 if dtype == torch.float32 else 1e-8
    for name, a, b in zip(("energy", "forces"), expected, got, strict=True):
        if not torch.allclose(a, b, rtol=tolerance, atol=tolerance):
            raise AssertionError(f"{model_name} {name} differs from mace-torch: {(a - b).abs().max():.3g}")
    del peer
    return our_step(model, data)


def build(model_name: str, atoms, dtype: torch.dtype, device: str):
    cutoff = MP_MEDIUM["r_max"] if model_name in CONVERTED else R_MAX
    data = add_neighbors(from_atoms(atoms), cutoff)
    data = {k: v.to(device) for k, v in data.items()}
    if model_name in CONVERTED:
        return converted_pair(model_name, dtype, device, data), data
    # inference, as both packages' ASE calculators run: no weight gradients are kept
    if model_name == "mace-torch":
        return mace_torch_step(mace_torch(dtype, device).requires_grad_(False).eval(), data, dtype), data
    if model_name == "mace-torch-cueq":
        return mace_torch_step(mace_torch_cueq(dtype, device, data), data, dtype), data
    if model_name.endswith(COMPILED):
        return our_step(compiled(model_name.removesuffix(COMPILED), dtype, device)[0], data), data
    return our_step(ours(model_name, dtype, device).requires_grad_(False).eval(), data), data


def interleaved_speedups(step, peers: dict, rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of ``t(peer) / t(step)``, each round timing one call of every peer and of
    ``step`` back to back (after one warm-up call each), so that load changes on a shared machine hit
    both sides of a ratio alike."""
    import statistics

    for fn in (step, *peers.values()):
        fn()
    ratios: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        ours = time.perf_counter() - start
        for name, fn in peers.items():
            start = time.perf_counter()
            fn()
            ratios[name].append((time.perf_counter() - start) / ours)
    return {name: statistics.median(values) for name, values in ratios.items()}


def child_peak_rss(model_name: str, system: str, args: argparse.Namespace) -> float | None:
    """Peak RSS (MB) of a fresh process that builds and runs one case twice; None if it fails."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        model_name,
        system,
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_child(model_name: str, system: str, args: argparse.Namespace) -> None:
    """Peak RSS above the process's footprint before the model and structure are built (imports
    excluded: mace-torch pulls in e3nn, we pull in Triton)."""
    import mlip.models  # noqa: F401  (import cost outside the measurement, as mace below)

    if model_name.startswith("mace-torch") or model_name in CONVERTED:
        import mace.modules  # noqa: F401
    dtype = getattr(torch, args.dtype)
    atoms = systems(quick=system != "box-10k")[system]
    before = _current_rss_mb()
    step, _ = build(model_name, atoms, dtype, "cpu")
    step()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak - before, "baseline_rss_mb": before}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the 10k-atom box")
    parser.add_argument(
        "--systems", default=None, help="comma-separated subset: water-3,aspirin,box-100,box-1000,box-10k"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--models",
        default="mace,mace-compiled,mace-torch,mace-gaunt,nequip,nequip-compiled,gridnet",
        help="comma-separated; NAME-compiled is our model NAME as an mlip compile package; also "
        "mace-torch-cueq (mace-torch converted to cuEquivariance), and "
        "mace-torch-mp-medium,mace-from-mp-medium (a MACE-MP-0 medium-shaped mace-torch model, 89 "
        "elements, r_max 6, and ours converted from it by mlip.models.from_mace)",
    )
    parser.add_argument(
        "--peer-max-atoms",
        type=int,
        default=2000 if not torch.cuda.is_available() else 100000,
        help="largest system mace-torch runs on (CPU memory)",
    )
    parser.add_argument(
        "--memory-models",
        default="mace,mace-torch",
        help="models whose CPU peak RSS is measured (the 10k box only for --large-models)",
    )
    parser.add_argument(
        "--large-models", default="mace,mace-compiled", help="models run on the 10k box (others skipped)"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the child-process RSS measurement (CPU)"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "model.json"))
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SYSTEM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(*args.child, args)
        return
    dtype = getattr(torch, args.dtype)
    rows = []
    for system, atoms in systems(args.quick).items():
        if args.systems and system not in args.systems.split(","):
            continue
        for model_name in args.models.split(","):
            if (model_name.startswith("mace-torch") or model_name in CONVERTED) and len(
                atoms
            ) > args.peer_max_atoms:
                rows.append(
                    {"system": system, "atoms": len(atoms), "model": model_name, "note": "skipped (memory)"}
                )
                continue
            if len(atoms) > 5000 and model_name not in args.large_models.split(","):
                rows.append(
                    {"system": system, "atoms": len(atoms), "model": model_name, "note": "skipped (time)"}
                )
                continue
            try:
                started = time.perf_counter()
                step, data = build(model_name, atoms, dtype, args.device)
                energy, forces = step()
                if not (torch.isfinite(energy).all() and torch.isfinite(forces).all()):  # synchronizes
                    raise RuntimeError("non-finite energy or forces")
                first_call = time.perf_counter() - started  # building + first step (compilation on GPU)
            except (ImportError, KeyError) as exc:
                rows.append(
                    {
                        "system": system,
                        "atoms": len(atoms),
                        "model": model_name,
                        "note": f"unavailable: {exc}",
                    }
                )
                continue
            # one warm-up call at every size: a first call pays one-time costs (allocator growth, caches)
            repeats, warmup = (5, 2) if len(atoms) < 500 else (2, 1) if len(atoms) < 5000 else (1, 1)
            seconds = measure(step, repeats=repeats, warmup=warmup)
            aten_ops = count_aten_ops(step) if len(atoms) < 5000 else None  # one more step: not at 10k
            if args.device.startswith("cuda"):
                memory = peak_memory(step, args.device) / 2**20
            else:
                wanted = model_name in args.memory_models.split(",") and (
                    len(atoms) < 5000 or model_name in args.large_models.split(",")
                )
                memory = child_peak_rss(model_name, system, args) if wanted and not args.no_memory else None
            rows.append(
                {
                    "system": system,
                    "atoms": len(atoms),
                    "edges": int(data[K.EDGE_INDEX].shape[1]),
                    "model": model_name,
                    "ms_per_step": 1e3 * seconds,
                    "steps_per_s": 1 / seconds,
                    "ns_per_day": FS_PER_STEP * 1e-6 * 86400 / seconds,
                    "us_per_atom": 1e6 * seconds / len(atoms),
                    "peak_mem_mb": memory,
                    "first_call_s": first_call,
                    "aten_ops": aten_ops,
                }
            )
            if model_name.endswith(COMPILED):
                base = model_name.removesuffix(COMPILED)
                rows[-1]["compile_s"] = compiled(base, dtype, args.device)[1]
                peers = {"eager": build(base, atoms, dtype, args.device)[0]}
                if base == "mace" and "mace-torch" in args.models and len(atoms) <= args.peer_max_atoms:
                    peers["mace_torch"] = build("mace-torch", atoms, dtype, args.device)[0]
                rounds = repeats + 2 if len(atoms) < 5000 else 1  # the 10k box: minutes per round
                for peer, ratio in interleaved_speedups(step, peers, rounds).items():
                    rows[-1][f"paired_vs_{peer}"] = ratio
            print_table(rows[-1:])
            write_json(args.out, "model", rows, device=args.device, dtype=args.dtype, partial=True)
            del step, data
    for row in rows:
        eager = row["model"].removesuffix(COMPILED)
        for peer_name in ("mace-torch", "mace-torch-cueq", "mace-torch-mp-medium", eager):
            # converted MP-medium rows: vs their mace-torch source only; compiled rows: also vs eager
            mp_pair = (peer_name == "mace-torch-mp-medium") == (row["model"] in CONVERTED)
            if peer_name == row["model"] or (peer_name != eager and not mp_pair):
                continue
            peer = next(
                (
                    r
                    for r in rows
                    if r["system"] == row["system"] and r["model"] == peer_name and "ms_per_step" in r
                ),
                None,
            )
            if peer and "ms_per_step" in row:
                column = peer_name if peer_name.startswith("mace-torch") else "eager"
                row[f"speedup_vs_{column.replace('-', '_')}"] = peer["ms_per_step"] / row["ms_per_step"]
    columns = [
        "system",
        "atoms",
        "edges",
        "model",
        "ms_per_step",
        "steps_per_s",
        "ns_per_day",
        "us_per_atom",
        "peak_mem_mb",
        "first_call_s",
        "aten_ops",
        "compile_s",
        "speedup_vs_eager",
        "paired_vs_eager",
        "speedup_vs_mace_torch",
        "paired_vs_mace_torch",
        "speedup_vs_mace_torch_cueq",
        "speedup_vs_mace_torch_mp_medium",
        "note",
    ]
    print(f"\ndevice {args.device}, dtype {args.dtype}, torch threads {torch.get_num_threads()}")
    print_table(rows, columns)
    figure = Path(args.out).with_suffix(".png")
    plot_scaling(rows, figure, f"energy+forces, {args.device}, {args.dtype}")
    write_json(args.out, "model", rows, device=args.device, dtype=args.dtype, figure=figure.name)


def plot_scaling(rows: list[dict], path: Path, title: str) -> None:
    """Time per atom (µs) against the number of atoms, one line per model (flat = linear cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted(
            (r["atoms"], r["us_per_atom"]) for r in rows if r["model"] == model and "us_per_atom" in r
        )
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=model)
    ax.set(xscale="log", yscale="log", xlabel="atoms", ylabel="time per atom (µs)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
