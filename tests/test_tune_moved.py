"""The Ray Tune integration's former module names still import (Ray's experiment state of a search
started by an older tagtune names its searcher, scheduler, callbacks and trainable by them)."""

from __future__ import annotations

import importlib
import pickle

import pytest

from tagtune.tune._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_imports_the_module_it_became(old):
    new = importlib.import_module(MOVED[old])
    public = [k for k in vars(new) if not k.startswith("_")]
    assert all(getattr(importlib.import_module(old), k) is getattr(new, k) for k in public)


def test_a_class_pickled_under_its_old_name_unpickles():
    from tagtune.tune.schedulers import StopRule

    old = pickle.dumps(StopRule(grace_period=1), protocol=0).replace(b"tagtune.tune.schedulers", b"tagtune.schedulers")
    assert b"tagtune.schedulers" in old and b"tagtune.tune.schedulers" not in old
    assert pickle.loads(old) == StopRule(grace_period=1)
