"""Neighbour list: ours (mlip.data.neighbors) vs vesin vs ASE, periodic boxes at a 5 Å cutoff.

Prints a table and writes benchmarks/results/neighbors.json. Run with OMP_NUM_THREADS set as wanted.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list
from vesin import NeighborList

from mlip.benchmarking import measure, print_table, write_json
from mlip.data.neighbors import neighbor_list


def _box(num_atoms: int, density: float = 0.085, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random positions in a cubic box at ``density`` atoms/Å^3 (metal-like)."""
    side = (num_atoms / density) ** (1 / 3)
    rng = np.random.default_rng(seed)
    return rng.uniform(0, side, size=(num_atoms, 3)), np.eye(3) * side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/neighbors.json")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        pos, cell = _box(n)
        pos_t = torch.as_tensor(pos, device=args.device)
        cell_t = torch.as_tensor(cell, device=args.device)
        pbc_t = torch.ones(3, dtype=torch.bool, device=args.device)
        edges = neighbor_list(pos_t, cell_t, pbc_t, args.cutoff)[0].shape[1]
        ours = measure(
            lambda p=pos_t, c=cell_t, b=pbc_t: neighbor_list(p, c, b, args.cutoff), repeats=5, warmup=1
        )
        vesin_nl = NeighborList(cutoff=args.cutoff, full_list=True)
        peer = measure(
            lambda p=pos, c=cell, nl=vesin_nl: nl.compute(points=p, box=c, periodic=True, quantities="ijS"),
            repeats=5,
            warmup=1,
        )
        ase_time = measure(
            lambda p=pos, c=cell: primitive_neighbor_list("ijS", [True] * 3, c, p, args.cutoff),
            repeats=2,
            warmup=1,
        )
        rows.append(
            {
                "atoms": n,
                "edges": edges,
                "device": args.device,
                "ours_ms": 1e3 * ours,
                "vesin_ms": 1e3 * peer,
                "ase_ms": 1e3 * ase_time,
                "ours/vesin": ours / peer,
                "ase/ours": ase_time / ours,
            }
        )
    print_table(rows)
    write_json(args.out, "neighbors", rows, device=args.device, cutoff=args.cutoff)


if __name__ == "__main__":
    main()
