"""The module names the Ray Tune integration had before it moved into :mod:`tagtune.tune`.

Ray pickles a search's searcher, scheduler, callbacks and trainable into its experiment state by
module and class name, so ``tagtune resume`` of a search started by an older tagtune unpickles
``tagtune.searcher.FamilySearcher`` and the like.  :func:`install_aliases` makes each old name
import the module it became (the classes are the same objects); nothing in tagtune imports them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

MOVED = {
    "tagtune.searcher": "tagtune.tune.searcher",
    "tagtune.schedulers": "tagtune.tune.schedulers",
    "tagtune.progress": "tagtune.tune.progress",
    "tagtune._ray_compat": "tagtune.tune._ray_compat",
    "tagtune.tracking.callback": "tagtune.tune.callback",
    "tagtune.tracking._restored": "tagtune.tune._restored",
    "tagtune.trainables.trial": "tagtune.tune.trainable",
}
"""old module name -> its module now."""


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name of :data:`MOVED` as a module holding the new module's names."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return ModuleSpec(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        new = importlib.import_module(MOVED[module.__name__])
        module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith("__")})


def install_aliases() -> None:
    """Make the old names importable (once per process; after every other finder)."""
    if not any(isinstance(finder, _Aliases) for finder in sys.meta_path):
        sys.meta_path.append(_Aliases())
