#!/usr/bin/env bash
# Issue 16's device check, for a machine with one CUDA GPU, PyTorch, numpy, pytest and
# scikit-learn but neither Ray, MLflow nor Optuna, nor tagtune installed, nor ../shared:
#
#   bash benchmarks/gpu_check.sh [bench_gpu.py flags]
#
# with benchmarks/gpu_data/bal_train.npz carried beside the repository (git-ignored; write it
# here with `python benchmarks/bench_gpu.py --pack benchmarks/gpu_data/bal_train.npz`, 25 MiB).
# It runs the `gpu` tests, then prints the figures as one Markdown table (bench_gpu.py), in well
# under 10 minutes.  Exit status: the tests' status, else the benchmark's.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# tagtune laid out as it installs (trainables/ is tagtune.trainables, ...), as .ci/typecheck does
site="$(mktemp -d)"
mkdir -p "$site/tagtune"
for f in tagtune/*.py; do ln -s "$PWD/$f" "$site/tagtune/"; done
for pkg in trainables tracking dashboards search_spaces; do ln -s "$PWD/$pkg" "$site/tagtune/$pkg"; done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export TAGTUNE_CACHE_DIR="$site/cache"

echo "## machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch, os; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '|', os.cpu_count(), 'CPUs')"

echo; echo "## gpu tests"
# -P: not the checkout first on sys.path (its tagtune/ lacks trainables/; the site above has it)
timeout 240 "$PY" -P -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
tests_rc=$?

echo; echo "## figures"
data=benchmarks/gpu_data/bal_train.npz
if [ ! -f "$data" ]; then
  echo "$data is missing: run \`python benchmarks/bench_gpu.py --pack $data\` beside ../shared and carry it"
  exit 2
fi
timeout 420 "$PY" benchmarks/bench_gpu.py --data "$data" "$@"
bench_rc=$?
rm -rf "$site"
[ "$tests_rc" -ne 0 ] && exit "$tests_rc"
exit "$bench_rc"
