"""The "models from code" entry of tagtune's pyfunc taggers (see :mod:`tagtune.tracking.serving`)."""

from __future__ import annotations

from mlflow.models import set_model

from tagtune.tracking.serving import TaggerModel

set_model(TaggerModel())
