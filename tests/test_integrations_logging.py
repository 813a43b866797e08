"""adamdist.integrations._logging: the callbacks' logging of new rows, with a real recorder."""

import numpy as np
import pytest
import torch

from adamdist.capture import UpdateRecorder
from adamdist.integrations._logging import RecorderSet


def _train(model, opt, steps, first=1):
    for step in range(first, first + steps):
        gen = torch.Generator().manual_seed(step)
        opt.zero_grad()
        model(torch.randn(16, 4, generator=gen)).pow(2).mean().backward()
        opt.step()


class _Spy:
    """A recorder that says which rows the set asked for."""

    def __init__(self, recorder):
        self.recorder, self.asked = recorder, []

    def __getattr__(self, name):
        return getattr(self.recorder, name)

    def result(self, kind="update", *, since=None):
        self.asked.append(since)
        return self.recorder.result(kind, since=since)


def test_each_log_sends_and_copies_only_the_new_steps():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    spy = _Spy(UpdateRecorder(opt, model, steps=10, sample_size=5).attach())
    rows = RecorderSet([spy], "updates")
    sent = []
    for first in (1, 4, 5, 9):
        _train(model, opt, {1: 3, 4: 1, 5: 4, 9: 2}[first], first)
        rows.log_new(sent.append)
    rows.log_new(sent.append)  # nothing new: nothing sent
    assert [s.steps.tolist() for s in sent] == [[1, 2, 3], [4], [5, 6, 7, 8], [9, 10]]
    assert spy.asked == [0, 3, 4, 8, 10]
    whole = spy.recorder.result()
    np.testing.assert_array_equal(np.concatenate([s.var for s in sent]), whole.var)
    spy.recorder.detach()


def test_a_failing_logger_warns_once_and_stops_logging():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rows = RecorderSet([UpdateRecorder(opt, model, steps=4).attach()], "updates")
    _train(model, opt, 2)

    def broken(stats):
        raise OSError("disk full")

    with pytest.warns(RuntimeWarning, match="disk full"):
        rows.log_new(broken)
    _train(model, opt, 2, 3)
    rows.log_new(broken)  # switched off: no second warning, no error
    assert rows.failed and rows.logged_through == 0
    rows.detach()
