"""tagtune: Ray Tune + Optuna hyperparameter search for audio tagging, tracked in MLflow.

Import name ``tagtune``.  The folders trainables/, tracking/, search_spaces/ and dashboards/
install as its subpackages ``tagtune.trainables`` (data, models, training), ``tagtune.tracking``
(MLflow: the run schema and store), ``tagtune.search_spaces`` and ``tagtune.dashboards``; the
mapping is written once, in pyproject.toml's ``[tool.setuptools.package-dir]`` (the type check
and tests/test_imports.py read it there).  In this folder: the orchestration (``tagtune.search``:
a search and its resumption; ``tagtune.finalize``), the command line (``tagtune.cli``), the Ray
Tune integration (``tagtune.tune``) and the leaf modules every package may import
(``tagtune.errors``, ``tagtune.names``).  Nothing is imported here, so ``import tagtune.tracking``
does not load Ray or torch.
"""
