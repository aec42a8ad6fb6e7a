"""`train.committee: 2` trains two members (seeds +0, +1; bootstrap resamples) into one committee file."""

from __future__ import annotations

import pytest
import torch

from mlip.errors import UserInputError
from mlip.models import Committee, load
from mlip.train.config import config_from_dict
from mlip.train.trainer import train


def test_committee_run_writes_a_committee_of_its_members(tmp_path, make_config):
    out = tmp_path / "run"
    config = config_from_dict(
        make_config(out, train={"max_steps": 4, "valid_every": 4, "committee": 2, "bootstrap": True})
    )
    results = train(config)
    assert results["committee"] == str(out / "committee.model") and len(results["members"]) == 2
    committee = load(out / "committee.model")
    assert isinstance(committee, Committee) and len(committee) == 2
    for i, member in enumerate(committee.members):
        trained = load(out / f"member{i}" / "best.model")
        for (name, a), b in zip(member.state_dict().items(), trained.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    a, b = (dict(m.named_parameters()) for m in committee.members)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different seeds, different weights
    # bootstrap: each member's statistics come from its own resample of the training set
    assert committee.members[0].config.shift != committee.members[1].config.shift
    with pytest.raises(UserInputError, match="earlier committee run"):
        train(config)
    assert train(config, resume=True)["members"][1]["step"] == 4  # finished members resume as done
