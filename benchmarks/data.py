"""Structures per second reading a dataset from its source files vs from the HDF5 cache.

Datasets (from ``../shared/data`` or ``$MLIP_SHARED_DATA``): rMD17 aspirin (the 10 aspirin split files,
10k frames of 21 atoms) and the 30 OC20 DFT relaxation trajectories (5,249 frames of 33-185 atoms).
Per dataset: source read (parse + records for every structure), cache write, cache read in order and in
random order (every record, in memory, a fresh dataset each time), and file sizes. Before timing, the
cached records are checked equal to the source records.

    python benchmarks/data.py [--out benchmarks/results/data.json] [--data PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlip.benchmarking import print_table, write_json
from mlip.datasets import CacheDataset, ConcatDataset, load, write_cache


def _data_dir(given: str | None) -> Path:
    """The real-data folder: ``--data``, ``$MLIP_SHARED_DATA`` or ``<repo>/../shared/data``."""
    if given:
        return Path(given)
    env = os.environ.get("MLIP_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _read_all(dataset, order) -> float:
    """Seconds to fetch every record of ``dataset`` in ``order``."""
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return time.perf_counter() - start


def _case(name: str, open_source, source_files: list[Path], tmp: Path) -> dict:
    """Time one dataset: source parse, cache write, cache reads; check cache == source first."""
    start = time.perf_counter()
    source = open_source()
    n = len(source)
    source_time = _read_all(source, range(n)) + (time.perf_counter() - start)
    cache_path = tmp / f"{name}.h5"
    start = time.perf_counter()
    write_cache(source, cache_path)
    write_time = time.perf_counter() - start
    cache = CacheDataset(cache_path)
    for i in np.random.default_rng(0).choice(n, size=min(n, 50), replace=False):
        a, b = source[int(i)], cache[int(i)]
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), (
            f"{name}: record {i} differs"
        )
    sequential = min(_read_all(CacheDataset(cache_path), range(n)) for _ in range(3))
    shuffled = np.random.default_rng(1).permutation(n).tolist()
    random = min(_read_all(CacheDataset(cache_path), shuffled) for _ in range(3))
    atoms = int(cache.offsets[-1])
    return {
        "dataset": name,
        "structures": n,
        "atoms/structure": atoms / n,
        "source struct/s": n / source_time,
        "cache write s": write_time,
        "cache struct/s": n / sequential,
        "cache random struct/s": n / random,
        "speed-up": source_time / sequential,
        "source MB": sum(p.stat().st_size for p in source_files) / 1e6,
        "cache MB": cache_path.stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/data.json")
    parser.add_argument("--data", default=None, help="folder of the real samples (default ../shared/data)")
    args = parser.parse_args()
    data = _data_dir(args.data)
    if not data.is_dir():
        raise SystemExit(f"real data not found at {data} (set --data or MLIP_SHARED_DATA)")
    aspirin = sorted((data / "rmd17").glob("rmd17_aspirin_*.npz"))
    trajs = data / "oc20_s2ef_trajs"
    cases = [
        ("rmd17-aspirin", lambda: ConcatDataset([load(p) for p in aspirin], str(data / "rmd17")), aspirin),
        ("oc20-trajectories", lambda: load(trajs, format="oc20-traj"), sorted(trajs.glob("*.traj"))),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_case(name, opener, files, Path(tmp)) for name, opener, files in cases]
    print_table(rows)
    write_json(args.out, "data", rows, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
