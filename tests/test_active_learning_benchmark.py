import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "active_learning.py"


def test_quick_run_writes_both_strategies_per_round_with_finite_figures(tmp_path):
    out = tmp_path / "al.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--work", str(tmp_path / "work")]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    record = json.loads(out.read_text())
    assert record["suite"] == "active_learning"
    rows = record["rows"]
    assert {(r["strategy"], r["round"]) for r in rows} == {
        (s, k) for s in ("uncertainty", "random") for k in (0, 1, 2)
    }
    for row in rows:
        assert row["labelled"] == 10 * (row["round"] + 1)
        for key in ("forces_mae", "energy_mae", "rho_frame", "rho_atom"):
            assert math.isfinite(row[key]), (row["strategy"], row["round"], key)
        assert row["forces_mae"] > 0 and row["energy_mae"] > 0
        assert -1 <= row["rho_frame"] <= 1 and -1 <= row["rho_atom"] <= 1
    # the shared start: both strategies begin from the same committee
    start = [r for r in rows if r["round"] == 0]
    assert start[0]["forces_mae"] == start[1]["forces_mae"]
    runs = record["runs"]
    assert len(runs) == len(rows)  # one repeat in --quick
    picked = [r for r in runs if r["strategy"] == "uncertainty" and r["round"] > 0]
    assert all(r["picked_std_median"] >= r["pool_std_median"] for r in picked)
    for strategy in ("uncertainty", "random"):  # each round adds 10 new pool frames
        new = [i for r in runs if r["strategy"] == strategy and r["round"] > 0 for i in r["picked"]]
        assert len(new) == len(set(new)) == 20
    assert [g["round"] for g in record["gains"]] == [1, 2]
    assert out.with_suffix(".png").stat().st_size > 0
