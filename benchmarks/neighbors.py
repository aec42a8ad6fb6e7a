"""Neighbour lists at a 5 Å cutoff: the package's chosen path (``method="auto"``), our torch list, vesin
called directly, and ASE, on periodic boxes; then batches of small molecules (the chosen path, our
batched torch list, vesin called once per molecule).

Every path's edge set is checked equal to the torch list's before timing. Prints two tables and writes
benchmarks/results/neighbors.json and neighbors_batched.json. Run with OMP_NUM_THREADS set as wanted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list
from vesin import NeighborList

from mlip.benchmarking import measure, print_table, write_json
from mlip.data.neighbors import batched_neighbor_list, neighbor_list


def _box(num_atoms: int, density: float = 0.085, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random positions in a cubic box at ``density`` atoms/Å^3 (metal-like)."""
    side = (num_atoms / density) ** (1 / 3)
    rng = np.random.default_rng(seed)
    return rng.uniform(0, side, size=(num_atoms, 3)), np.eye(3) * side


def _triples(edge_index: torch.Tensor, shifts: torch.Tensor) -> set:
    return set(zip(*edge_index.cpu().tolist(), map(tuple, shifts.cpu().long().tolist()), strict=True))


def _periodic_row(n: int, cutoff: float, device: str, ase_max: int) -> dict:
    """One periodic box of ``n`` atoms: every path timed after its edge set is checked."""
    pos, cell = _box(n)
    pos_t, cell_t = torch.as_tensor(pos, device=device), torch.as_tensor(cell, device=device)
    pbc_t = torch.ones(3, dtype=torch.bool, device=device)
    vesin_nl = NeighborList(cutoff=cutoff, full_list=True)
    chosen = neighbor_list(pos_t, cell_t, pbc_t, cutoff)
    torch_list = neighbor_list(pos_t, cell_t, pbc_t, cutoff, method="torch")
    i, j, s = vesin_nl.compute(points=pos, box=cell, periodic=True, quantities="ijS")
    reference = _triples(*torch_list)
    assert _triples(*chosen) == reference, f"{n} atoms: the chosen list differs from the torch list"
    assert _triples(torch.as_tensor(np.stack([i, j]).astype(np.int64)), torch.as_tensor(s)) == reference
    repeats = 5 if n <= 20_000 else 2
    chosen_t = measure(lambda: neighbor_list(pos_t, cell_t, pbc_t, cutoff), repeats=repeats, warmup=1)
    torch_t = measure(
        lambda: neighbor_list(pos_t, cell_t, pbc_t, cutoff, method="torch"), repeats=repeats, warmup=1
    )
    vesin_t = measure(
        lambda: vesin_nl.compute(points=pos, box=cell, periodic=True, quantities="ijS"),
        repeats=repeats,
        warmup=1,
    )
    row = {
        "atoms": n,
        "edges": len(reference),
        "device": device,
        "chosen": "vesin" if device == "cpu" else "torch",
        "chosen_ms": 1e3 * chosen_t,
        "torch_ms": 1e3 * torch_t,
        "vesin_ms": 1e3 * vesin_t,
        "chosen/vesin": chosen_t / vesin_t,
        "torch/vesin": torch_t / vesin_t,
    }
    if n <= ase_max:
        ase_t = measure(
            lambda: primitive_neighbor_list("ijS", [True] * 3, cell, pos, cutoff), repeats=2, warmup=1
        )
        row["ase/chosen"] = ase_t / chosen_t
    return row


def _batched_row(num: int, atoms: int, cutoff: float, device: str) -> dict:
    """``num`` random molecules of ``atoms`` atoms (a 6 Å cube each, no cell): the chosen path, our
    batched torch list in one call, and ``num`` direct vesin calls."""
    rng = np.random.default_rng(num)
    mols = [rng.uniform(-3, 3, size=(atoms, 3)) for _ in range(num)]
    pos_t = torch.as_tensor(np.concatenate(mols), device=device)
    cell_t = torch.zeros(num, 3, 3, dtype=torch.float64, device=device)
    pbc_t = torch.zeros(num, 3, dtype=torch.bool, device=device)
    batch_t = torch.arange(num, device=device).repeat_interleave(atoms)
    vesin_nl = NeighborList(cutoff=cutoff, full_list=True)
    box = np.zeros((3, 3))

    def loop() -> list:
        return [vesin_nl.compute(points=m, box=box, periodic=False, quantities="ijS") for m in mols]

    edges = batched_neighbor_list(pos_t, cell_t, pbc_t, batch_t, cutoff, method="torch")[0].shape[1]
    assert edges == sum(len(i) for i, _, _ in loop()), "batched list and vesin differ in edge count"
    chosen = measure(lambda: batched_neighbor_list(pos_t, cell_t, pbc_t, batch_t, cutoff), repeats=5)
    ours = measure(
        lambda: batched_neighbor_list(pos_t, cell_t, pbc_t, batch_t, cutoff, method="torch"), repeats=5
    )
    peer = measure(loop, repeats=5)
    return {
        "structures": num,
        "atoms/structure": atoms,
        "edges": edges,
        "device": device,
        "chosen": "vesin" if device == "cpu" else "torch",
        "chosen_ms": 1e3 * chosen,
        "batched_torch_ms": 1e3 * ours,
        "vesin_loop_ms": 1e3 * peer,
        "chosen/vesin_loop": chosen / peer,
        "batched_torch/vesin_loop": ours / peer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--molecule-atoms", type=int, default=24)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--ase-max", type=int, default=10000, help="largest box also timed with ASE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/neighbors.json")
    args = parser.parse_args()
    periodic = [_periodic_row(n, args.cutoff, args.device, args.ase_max) for n in args.sizes]
    print_table(periodic)
    batched = [_batched_row(b, args.molecule_atoms, args.cutoff, args.device) for b in args.batches]
    print_table(batched)
    write_json(args.out, "neighbors", periodic, device=args.device, cutoff=args.cutoff)
    batched_out = Path(args.out).with_name(Path(args.out).stem + "_batched.json")
    write_json(batched_out, "neighbors", batched, device=args.device, cutoff=args.cutoff)


if __name__ == "__main__":
    main()
