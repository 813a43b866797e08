import dataclasses

import numpy as np
import pytest

from adamdist.experiments import cached, config_hash, profile
from adamdist.results import UpdateStats


@dataclasses.dataclass(frozen=True)
class _Cfg:
    steps: int = 3
    lr: float = 1e-3


def _stats(value):
    z = np.zeros((1, 1))
    return UpdateStats(steps=[1], names=["w"], edges=[0.0, 1.0], count=z + 1, mean=z + value, var=z,
                       abs_var=z, skew=z, nonfinite=z, hist=np.ones((1, 1, 1)), underflow=z, overflow=z)


def test_cache_hits_and_recomputes(tmp_path):
    calls = []

    def compute(v):
        calls.append(v)
        return _stats(v)

    a = cached(_Cfg(), lambda: compute(1.0), folder=tmp_path)
    b = cached(_Cfg(), lambda: compute(2.0), folder=tmp_path)
    assert calls == [1.0] and b.mean[0, 0] == a.mean[0, 0] == 1.0
    c = cached(_Cfg(steps=4), lambda: compute(3.0), folder=tmp_path)
    assert calls == [1.0, 3.0] and c.mean[0, 0] == 3.0
    assert config_hash(_Cfg()) != config_hash(_Cfg(lr=2e-3))


def test_cache_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dataclass"):
        config_hash({"steps": 3})
    with pytest.raises(TypeError, match="UpdateStats"):
        cached(_Cfg(), lambda: 42, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_profile(monkeypatch):
    monkeypatch.delenv("ADAMDIST_PROFILE", raising=False)
    assert profile() == "quick"
    monkeypatch.setenv("ADAMDIST_PROFILE", "paper")
    assert profile() == "paper"
    monkeypatch.setenv("ADAMDIST_PROFILE", "fast")
    with pytest.raises(ValueError, match="ADAMDIST_PROFILE"):
        profile()
