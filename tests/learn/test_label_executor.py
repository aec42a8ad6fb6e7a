"""The labelling executors: inline, a spawn pool and a Dask LocalCluster give the same labels."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mlip.dft.executor import DaskExecutor, LocalExecutor
from mlip.dft.labelling import check_level_of_theory, label_configurations
from mlip.errors import UserInputError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyscf") is None, reason="pyscf (extra 'dft') not installed"
)


def _waters(count: int = 3):
    from ase.build import molecule

    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        atoms = molecule("H2O")
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info["config_id"] = 10 + i
        frames.append(atoms)
    return frames


def _settings():
    from mlip.dft.pyscf_labeler import DFTSettings

    return DFTSettings(xc="LDA", basis="sto-3g", grid_level=1)


def _by_id(path):
    from ase.io import read

    return {f.info["config_id"]: f for f in read(path, index=":")}


def _assert_same(a, b):
    assert sorted(a) == sorted(b) == [10, 11, 12]
    for i in a:
        assert a[i].info["energy_hartree"] == pytest.approx(b[i].info["energy_hartree"], abs=1e-9)
        np.testing.assert_allclose(a[i].get_forces(), b[i].get_forces(), atol=1e-6)
        np.testing.assert_array_equal(a[i].positions, b[i].positions)


def test_pool_and_dask_cluster_label_like_the_inline_executor(tmp_path):
    distributed = pytest.importorskip("distributed")
    frames = _waters()
    inline = label_configurations(frames, tmp_path / "inline.extxyz", _settings(), LocalExecutor(1, 1))
    assert sorted(inline.labelled) == [10, 11, 12] and not inline.failed
    pool = label_configurations(frames, tmp_path / "pool.extxyz", _settings(), LocalExecutor(2, 1))
    assert sorted(pool.labelled) == [10, 11, 12]
    _assert_same(_by_id(tmp_path / "inline.extxyz"), _by_id(tmp_path / "pool.extxyz"))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        executor = DaskExecutor(client=client)
        report = label_configurations(frames[:2], tmp_path / "dask.extxyz", _settings(), executor)
        assert sorted(report.labelled) == [10, 11]
        # a rerun with one more configuration labels only that one (resumable, no duplicates)
        report = label_configurations(frames, tmp_path / "dask.extxyz", _settings(), executor)
        assert report.labelled == [12] and sorted(report.skipped) == [10, 11]
    _assert_same(_by_id(tmp_path / "inline.extxyz"), _by_id(tmp_path / "dask.extxyz"))
    labelled = list(_by_id(tmp_path / "dask.extxyz").values())
    check_level_of_theory(labelled, _settings(), "dask.extxyz")
    from mlip.dft.pyscf_labeler import DFTSettings

    with pytest.raises(UserInputError, match="frame 0: dft_basis = 'sto-3g'"):
        check_level_of_theory(labelled, DFTSettings(xc="LDA", basis="def2-SVP"), "dask.extxyz")
    with pytest.raises(UserInputError, match="frame 0: no dft_xc"):
        check_level_of_theory(_waters(1), _settings(), "raw.extxyz")


def test_an_unreachable_scheduler_is_a_user_error():
    pytest.importorskip("distributed")
    with pytest.raises(UserInputError, match="scheduler tcp://127.0.0.1:9: cannot connect"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1.0)
