"""Label a list of configurations with PySCF into an extxyz file, resumably (``mlip label``, ``mlip learn``).

:func:`label_configurations` skips the configurations whose ``info["config_id"]`` is already in the
output, runs the others on an :class:`~mlip.dft.executor.Executor` and appends each labelled frame the
moment it is ready (:func:`mlip.dft.store.append_frame`), so a killed run loses at most the calculations
in flight and a rerun labels nothing twice. Each frame holds energy (eV) and forces (eV/Å) plus
``energy_hartree``, ``scf_cycles``, ``label_seconds`` and the level of theory as ``dft_<field>`` info keys
(:class:`~mlip.dft.pyscf_labeler.DFTSettings`), which :func:`check_level_of_theory` compares.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlip.dft.executor import Executor, LocalExecutor
from mlip.dft.pyscf_labeler import DFTSettings
from mlip.errors import UserInputError


@dataclasses.dataclass
class LabelReport:
    """What :func:`label_configurations` did: ``labelled`` config ids appended now, ``skipped`` ones
    found already labelled, ``failed`` ``{config_id: error}`` (retried by a rerun), and whether the time
    limit stopped it before every configuration had been tried."""

    labelled: list[int]
    skipped: list[int]
    failed: dict[int, str]
    stopped_early: bool = False

    @property
    def attempts(self) -> int:
        """DFT calculations run (labelled + failed)."""
        return len(self.labelled) + len(self.failed)


def label_one(task: tuple[int, Any, Any, DFTSettings]) -> tuple[int, dict[str, Any] | None, str, float]:
    """Worker: label one configuration ``(config_id, numbers [N], positions [N, 3] Å, settings)``;
    returns ``(config_id, result or None, error, seconds)``."""
    from mlip.dft.pyscf_labeler import label

    config_id, numbers, positions, settings = task
    start = time.perf_counter()
    try:
        return config_id, label(numbers, positions, settings), "", time.perf_counter() - start
    except Exception as error:  # an unconverged or failed SCF is reported and retried on a rerun
        return config_id, None, f"{type(error).__name__}: {error}", time.perf_counter() - start


def labelled_atoms(atoms: Any, result: dict[str, Any], settings: DFTSettings, seconds: float) -> Any:
    """A copy of ``atoms`` with the DFT energy and forces and the level of theory in its info."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=result["energy"], forces=result["forces"])
    out.info.update(
        energy_hartree=result["energy_hartree"],
        scf_cycles=int(result["scf_cycles"]),
        label_seconds=round(seconds, 3),
        **{f"dft_{k}": v for k, v in settings.as_dict().items()},
    )
    return out


def label_configurations(
    configs: Sequence[Any],
    output: str | Path,
    settings: DFTSettings,
    executor: Executor | None = None,
    time_limit: float | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label ``configs`` (``ase.Atoms``, each with a unique integer ``info["config_id"]``) into
    ``output`` (extxyz, appended to), skipping the ids already there. ``executor``: default inline
    (:class:`~mlip.dft.executor.LocalExecutor` with one worker). ``time_limit`` (s): stop taking results
    after it (the rest are labelled by a rerun). Failures are reported in the result, not raised."""
    from tqdm import tqdm

    from mlip.dft import store

    ids = [int(a.info["config_id"]) for a in configs]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise UserInputError(
            f"config_id {duplicate} appears more than once among the configurations to label"
        )
    done = {int(a.info["config_id"]) for a in store.read_frames(output)}
    by_id = {i: a for i, a in zip(ids, configs, strict=True) if i not in done}
    report = LabelReport(labelled=[], skipped=[i for i in ids if i in done], failed={})
    if progress:
        print(f"{len(report.skipped)} of {len(ids)} configurations already labelled; {len(by_id)} to go")
    if not by_id:
        return report
    executor = executor if executor is not None else LocalExecutor(1)
    tasks = [(i, a.numbers, a.positions, settings) for i, a in by_id.items()]
    start = time.monotonic()
    bar = tqdm(total=len(ids), initial=len(report.skipped), desc="label", unit="config", disable=not progress)
    try:
        for config_id, result, error, seconds in executor.map_unordered(label_one, tasks):
            if result is None:
                report.failed[config_id] = error
                tqdm.write(f"config {config_id}: {error}")
            else:
                store.append_frame(output, labelled_atoms(by_id[config_id], result, settings, seconds))
                report.labelled.append(config_id)
                bar.update(1)
                bar.set_postfix(last_s=f"{seconds:.1f}")
            finished = len(report.labelled) + len(report.failed) == len(tasks)
            if not finished and time_limit is not None and time.monotonic() - start > time_limit:
                tqdm.write(f"time limit of {time_limit:.0f} s reached: stopping (run again to resume)")
                report.stopped_early = True
                break
    finally:
        bar.close()
    return report


def check_level_of_theory(frames: Sequence[Any], settings: DFTSettings, source: str | Path) -> None:
    """Refuse labelled ``frames`` (from ``source``) whose level of theory differs from ``settings``:
    every frame must carry the ``dft_xc``, ``dft_basis``, ``dft_charge`` and ``dft_spin`` info keys
    (written by :func:`labelled_atoms`) with the same values (:class:`~mlip.errors.UserInputError`)."""
    expected = {
        f"dft_{k}": v for k, v in settings.as_dict().items() if k in ("xc", "basis", "charge", "spin")
    }
    for index, atoms in enumerate(frames):
        for key, value in expected.items():
            if key not in atoms.info:
                raise UserInputError(
                    f"{source}: frame {index}: no {key} in its info: the level of theory of its labels is "
                    f"unknown (label it with `mlip label`, or add {key}={value})"
                )
            found = atoms.info[key]
            same = str(found).lower() == str(value).lower() if isinstance(value, str) else found == value
            if not same:
                raise UserInputError(
                    f"{source}: frame {index}: {key} = {found!r}, but new frames would be labelled with "
                    f"{value!r}: mixing levels of theory in one training set"
                )
