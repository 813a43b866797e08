"""adamdist.integrations._common: what the callbacks share (parameter choice, joining recorders, the logged moments)."""

import math

import numpy as np
import pytest
import torch

from adamdist.capture import UpdateRecorder
from adamdist.integrations._common import check_step_offset, check_tag, join, params_held_by, scalar_rows


def _two_optimizers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    return model, torch.optim.Adam(model[0].parameters(), lr=1e-2), torch.optim.SGD(model[1].parameters(), lr=1e-2)


def test_params_held_by_keeps_what_this_optimizer_updates():
    model, first, second = _two_optimizers()
    assert list(params_held_by(first, model, None)) == ["0.weight", "0.bias"]
    assert list(params_held_by(second, model, ["0.weight", "1.bias"])) == ["1.bias"]
    with pytest.raises(ValueError, match="not parameters of the model"):
        params_held_by(first, model, ["2.weight"])
    with pytest.raises(TypeError, match="list of parameter names"):
        params_held_by(first, model, "0.weight")


def test_join_puts_the_tensors_of_two_recorders_side_by_side_and_refuses_other_steps():
    model, first, second = _two_optimizers()
    recs = [UpdateRecorder(o, params_held_by(o, model, None), steps=3, sample_size=4).attach() for o in (first, second)]
    for step in range(3):
        first.zero_grad(), second.zero_grad()
        model(torch.randn(8, 4, generator=torch.Generator().manual_seed(step))).pow(2).mean().backward()
        first.step(), second.step()
    parts = [r.result() for r in recs]
    joined = join(parts)
    assert joined.names == ("0.weight", "0.bias", "1.weight", "1.bias")
    np.testing.assert_array_equal(joined.var[:, 2:], parts[1].var)
    assert len(joined.metadata["optimizers"]) == 2 and set(joined.samples) == set(joined.names)
    with pytest.raises(ValueError, match="different steps"):
        join([parts[0], parts[1].select(steps=[1, 2])])
    rows = dict(scalar_rows(joined, "u"))
    assert sorted(rows) == [1, 2, 3] and rows[2]["u/1.bias/var"] == pytest.approx(float(joined.var[1, 3]))
    assert all(math.isfinite(v) for values in rows.values() for v in values.values())
    for r in recs:
        r.detach()


def test_tags_and_offsets_are_checked():
    assert check_tag("/updates/") == "updates" and check_step_offset(3) == 3
    for bad in ("", "//", 3):
        with pytest.raises(ValueError, match="tag"):
            check_tag(bad)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step_offset"):
            check_step_offset(bad)
