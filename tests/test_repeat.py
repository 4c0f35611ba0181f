"""`tagtune repeat`: a search's best configs trained again with other seeds, and the report's
seed-spread table."""

from __future__ import annotations

import pytest

from tagtune.cli import main
from tagtune.errors import InputError
from tagtune.repeat import repeat_best, repeat_seeds


def test_repeat_seeds_step_from_the_trials_seed():
    assert repeat_seeds(3, 2) == [1003, 2003]


def test_bad_repeat_flags_exit_2_naming_them(workdir, capsys):
    with pytest.raises(InputError, match="--top-k and --seeds"):
        repeat_best("nothing", None, top_k=0)
    assert main(["repeat", "--experiment", "missing"]) == 2
    assert "no experiment named 'missing'" in capsys.readouterr().err
