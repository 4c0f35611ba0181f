"""Data, models and training (import name ``tagtune.trainables``: the folder ``trainables/``
installs under it, see ``[tool.setuptools.package-dir]`` in pyproject.toml).

``tagtune.trainables.data`` reads every data format, ``tagtune.trainables.models`` registers the
model families, ``tagtune.trainables.loop`` trains one config (``fit``),
``tagtune.trainables.checkpoint`` saves and loads a model, ``tagtune.trainables.inference`` scores
clips the way each data kind needs.  Nothing is imported here: import from the modules.
"""
