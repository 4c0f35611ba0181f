"""The Ray Tune integration, in one place (import name ``tagtune.tune``).

* :mod:`~tagtune.tune.cluster`: start or join Ray, check its storage, choose the GPUs per trial;
* :mod:`~tagtune.tune.tuner`: the trainable and the :class:`ray.tune.Tuner` (new, or restored
  on resume); :mod:`~tagtune.tune.trainable`: the function each trial runs in a Ray worker;
* :mod:`~tagtune.tune.searcher`: one Optuna study per family behind one Tune searcher;
  :mod:`~tagtune.tune.schedulers`: early stopping per family and the time budget;
* :mod:`~tagtune.tune.callback`: the driver-side callback that writes each trial to MLflow;
  :mod:`~tagtune.tune.progress`: the progress lines;
* :mod:`~tagtune.tune._ray_compat`: the Ray internals tagtune relies on, checked per version.

Import from the modules: this ``__init__`` imports none of them, so a Ray worker that unpickles
the trainable loads torch and the training loop only, not MLflow or Optuna.  It makes the names
these modules had before they were gathered here importable again (:mod:`~tagtune.tune._moved`),
so Ray's experiment state pickled by an older tagtune still restores.
"""

from tagtune.tune._moved import install_aliases

install_aliases()
