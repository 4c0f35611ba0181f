"""tagtune: Ray Tune + Optuna hyperparameter search for audio tagging, tracked in MLflow.

The orchestration lives here (``tagtune.search``: a search and its resumption; ``tagtune.cli``:
the command line); the subpackages ``tagtune.trainables`` (data, models, training),
``tagtune.tracking`` (the MLflow run schema and store), ``tagtune.search_spaces`` and
``tagtune.dashboards`` each export their public names from their ``__init__``.  Nothing is
imported here, so ``import tagtune.tracking`` does not load Ray or torch.
"""
