"""`mlip demo --quick`: the whole demo path (train, test errors, NVE MD, plot) in seconds."""

from __future__ import annotations

from mlip.cli import main as cli_main


def test_demo_quick(tmp_path):
    import json

    assert cli_main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train"]["test"]["num_structures"] == 38
    assert summary["md"]["total_energy_range_meV"] < 20
    assert (tmp_path / "md_energy.png").stat().st_size > 0
