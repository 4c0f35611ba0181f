"""A float per-clip embedding set from real audio through every command: FSDD in HEAR's layout.

    python benchmarks/bench_fsdd_hear.py [--hear benchmarks/out/fsdd-hear] [--families fc1,fc2,attention]
                                         [--max-epochs 20] [--out benchmarks/out/bench-fsdd-hear]

``make_fsdd_hear.py`` writes the HEAR folder once (per-clip statistics of tagtune's log-mel front
end over ../shared/data/fsdd, FSDD's official train/test split, a valid split cut from train).
Then, as a user would, through the CLI: ``tagtune search`` (single-label, the HEAR folder's own
train/valid split; test held out), ``tagtune finalize`` (no ``--eval``: the folder's test split is
scored; registers the best final per family), ``tagtune predict`` on the same folder with the
registered model, and ``mlflow models serve`` of it answering one request built from a test clip's
raw features.  Prints the finals' test accuracy and the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from _common import machine, print_table

HERE = Path(__file__).resolve().parent
EXPERIMENT = "fsdd-hear"


def _tagtune(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "tagtune.cli", *args]
    print("$ tagtune " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE if capture else None, text=True)
    return done.stdout or ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_one(model_uri: str, uri: str, clip: np.ndarray, log: Path) -> dict[str, float]:
    """Serve ``model_uri`` with ``mlflow models serve`` and post one clip; its answer."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    port = _free_port()
    cmd = [shutil.which("mlflow", path=bin_dir) or "mlflow", "models", "serve", "-m", model_uri]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    print("$ MLFLOW_TRACKING_URI=" + uri + " " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    server = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        start_new_session=True,  # noqa: SIM115
    )
    request = json.dumps({"inputs": clip[None].tolist()}).encode()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and server.poll() is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", data=request, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return json.loads(resp.read())["predictions"][0]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        raise RuntimeError(f"mlflow models serve gave no answer; see {log}")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hear", default=str(HERE / "out" / "fsdd-hear"))
    parser.add_argument("--families", default="fc1,fc2,attention")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "out" / "bench-fsdd-hear"))
    args = parser.parse_args()
    hear, out = Path(args.hear).resolve(), Path(args.out).resolve()
    if not hear.exists():
        subprocess.run([sys.executable, str(HERE / "make_fsdd_hear.py"), "--out", str(hear)], check=True)
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    store = ["--experiment", EXPERIMENT, "--tracking-uri", uri]
    t0 = time.perf_counter()
    _tagtune(
        "search",
        "--train",
        str(hear),
        "--families",
        args.families,
        "--trials-per-family",
        "1",
        "--max-epochs",
        str(args.max_epochs),
        "--storage-path",
        str(out / "runs"),
        *store,
    )
    _tagtune("finalize", "--train", str(hear), *store)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`tagtune.kind` = 'final'", order_by=["start_time DESC"])
    rows, best = [], None
    for r in runs:
        m = r.data.metrics
        rows.append([r.data.tags.get("tagtune.family"), m.get("eval_accuracy"), m.get("eval_map3"), m.get("eval_mAUC")])
        if best is None or m.get("eval_accuracy", 0) > best[1]:
            best = (r.data.tags.get("tagtune.family"), m.get("eval_accuracy", 0))
    assert best is not None
    model_uri = f"models:/{EXPERIMENT}-{best[0]}/1"
    lines = _tagtune("predict", "--model", model_uri, "--input", str(hear), "--top-k", "1", *store[2:], capture=True)
    first = json.loads(lines.splitlines()[0])
    from tagtune.trainables.data import load_dataset

    ds = load_dataset(hear)
    test = np.flatnonzero(np.asarray(ds.split) == "test")
    answer = _serve_one(model_uri, uri, np.asarray(ds.x[test[0]], np.float32), out / "serve.log")
    truth = ds.class_names[int(np.argmax(ds.y[test[0]]))]
    print(machine())
    print(f"data: {ds.n_clips} clips, x {ds.x.shape[1:]} {ds.x.dtype}, {ds.n_classes} classes, task {ds.task}")
    print_table(["final (test split)", "eval_accuracy", "eval_map3", "eval_mAUC"], rows)
    print(f"predict {model_uri}: {len(lines.splitlines())} clips tagged, first {first['id']} -> {first['labels'][0]}")
    top = max(answer, key=answer.get)
    print(f"served {model_uri}: test clip {ds.ids[test[0]]} (label {truth}) -> {top} {answer[top]:.3f}")
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
