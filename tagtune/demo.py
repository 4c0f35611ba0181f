"""``tagtune demo``: the embedded default end to end on generated data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

DEMO_FAMILIES = "default"  # a set of tagtune.families.FAMILY_SETS: seed 000's four and attention
DEMO_TRIALS_PER_FAMILY = 3
DEMO_MAX_EPOCHS = 6


def demo(folder: str, tracking_uri: str | None, trials_per_family: int, max_epochs: int) -> None:
    """Generate data (once), search the default families (seed 000's four and attention),
    report, export, say how to browse."""
    from tagtune.commands import export, report
    from tagtune.families import FAMILY_SETS
    from tagtune.search import CheckedSearchSpec, run_search
    from tagtune.tracking import ui_command
    from tagtune.trainables.data import synthesize

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    root = Path(folder).resolve()
    data_dir = root / "data"
    if not (data_dir / "class_labels_indices.csv").exists():
        say(f"generating an AudioSet-like data set in {data_dir} ...")
        synthesize(data_dir, n_clips=6000, n_classes=64, seed=0, fmt="tfrecord")
    spec = CheckedSearchSpec(
        train=str(data_dir),
        families=list(FAMILY_SETS[DEMO_FAMILIES]),
        trials_per_family=trials_per_family,
        max_epochs=max_epochs,
        experiment="demo",
        tracking_uri=tracking_uri,
        storage_path=str(root / "ray"),
    )
    outcome = run_search(spec, echo=say)
    markdown, _ = report("demo", outcome.tracking_uri, outcome.parent_run_id)
    paths = export("demo", outcome.tracking_uri, str(root / "best-configs"), outcome.parent_run_id)
    print("\nPer-family validation mAUC over the search's trials (seed 000's Fig. 4 columns):\n")
    print(markdown)
    print(f"\nbest configs: {', '.join(str(p) for p in paths)}")
    print(f"retrain one:  tagtune train --config {paths[0]} --train {data_dir}")
    print(f"report again: tagtune report --experiment demo --tracking-uri {outcome.tracking_uri}")
    print(f"demo took {time.perf_counter() - t0:.0f} s. Browse every trial and its curves with:\n")
    print(f"  {ui_command(outcome.tracking_uri)}")
