import dataclasses
import re

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


def test_corrupt_cache_file_is_moved_aside_and_recomputed(tmp_path):
    calls = []

    def compute(v):
        calls.append(v)
        return _stats(v)

    cached(_Cfg(), lambda: compute(1.0), folder=tmp_path)
    (path,) = tmp_path.iterdir()
    damaged = path.read_bytes()[:40]
    path.write_bytes(damaged)  # a run killed while copying the cache, a full disk, ...
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(str(path))}.*moved it to .*{re.escape(path.name)}\.corrupt-"):
        again = cached(_Cfg(), lambda: compute(2.0), folder=tmp_path)
    assert calls == [1.0, 2.0] and again.mean[0, 0] == 2.0
    (aside,) = [p for p in tmp_path.iterdir() if p != path]
    assert aside.name.startswith(f"{path.name}.corrupt-") and aside.read_bytes() == damaged
    assert cached(_Cfg(), lambda: compute(3.0), folder=tmp_path).mean[0, 0] == 2.0 and calls == [1.0, 2.0]


def test_unwritable_cache_warns_and_returns_the_result(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(str(blocker / 'cache'))} \(Not a directory\).*not cached"):
        assert cached(_Cfg(), lambda: _stats(1.0), folder=blocker / "cache").mean[0, 0] == 1.0
    monkeypatch.setenv("ADAMDIST_CACHE", str(blocker))
    not_a_folder = rf"{re.escape(str(blocker))} \(it is a file, not a folder\).*ADAMDIST_CACHE"
    with pytest.warns(RuntimeWarning, match=not_a_folder):
        assert cached(_Cfg(), lambda: _stats(2.0)).mean[0, 0] == 2.0
    assert blocker.read_text() == "a regular file"


def test_read_only_cache_warns_and_returns_the_result(tmp_path, monkeypatch):
    import os

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(str(tmp_path))} \(Permission denied\)"):
        assert cached(_Cfg(), lambda: _stats(1.0), folder=tmp_path).mean[0, 0] == 1.0
    assert list(tmp_path.iterdir()) == []


def test_a_change_to_the_packages_code_changes_the_cache_key(tmp_path, monkeypatch):
    import shutil

    from adamdist.experiments import common

    copy = tmp_path / "adamdist"
    shutil.copytree(common.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = common.source_hash(copy)
    assert before == common.source_hash(common.PACKAGE_DIR)  # the copy hashes like the original
    (copy / "plots.py").write_text((copy / "plots.py").read_text() + "\n# a chart tweak\n")
    common.source_hash.cache_clear()
    assert common.source_hash(copy) == before  # charts never feed results
    (copy / "results.py").write_text((copy / "results.py").read_text() + "\n# a change to the statistics\n")
    common.source_hash.cache_clear()
    after = common.source_hash(copy)
    assert after != before
    key = config_hash(_Cfg())
    monkeypatch.setattr(common, "source_hash", lambda: after)
    assert config_hash(_Cfg()) != key


def test_pick_layer_is_seeded_and_honours_the_size_floor():
    from adamdist.experiments.common import pick_layer

    names = ["w1", "w2", "w3", "w4"]
    assert pick_layer(names, 3) == pick_layer(names, 3)
    assert {pick_layer(names, s) for s in range(40)} == set(names)
    numels = {"w1": 10, "w2": 10_000, "w3": 9_999, "w4": 50_000}
    assert {pick_layer(names, s, numels=numels, min_numel=10_000) for s in range(40)} == {"w2", "w4"}
    with pytest.raises(ValueError, match="at least 100000"):
        pick_layer(names, numels=numels, min_numel=100_000)
    with pytest.raises(ValueError, match="empty"):
        pick_layer([])
