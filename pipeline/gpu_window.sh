#!/usr/bin/env bash
# One lent GPU window in one call (docs/notes/gpu-runs.md): the peer benchmark if it is missing, then the plan's
# next parts within BUDGET seconds, and what they made packed for the trip back.
#   bash pipeline/gpu_window.sh prepare       # here, before the window: .gpu/ holds what the lent machine lacks
#   bash pipeline/gpu_window.sh run BUDGET    # there (device tool: carry [".gpu"], timeout_s >= BUDGET + 240)
#   bash pipeline/gpu_window.sh unpack DIR    # here, after: DIR = the files the call sent back (its files_at)
# The lent machine has torch but neither dvc nor mlflow, no genzoo install and no ../shared: `prepare` composes the
# gpu params and copies the data mirror and the commit into .gpu/ (git-ignored, carried); `run` reads them from
# there, with MLflow off (the snapshot's run.json and ledgers are the record). A paused part's checkpoint comes
# back in .gpu/checkpoints; carry it to the next window (the call carries at most 64 MiB with the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  test -x .venv/bin/python || { echo "no .venv: run make install first"; exit 1; }
  mkdir -p .gpu/mirror
  .venv/bin/python pipeline/compose.py --out .gpu/gpu.yaml profile=gpu
  dataset=$(.venv/bin/python -c "import yaml; print(yaml.safe_load(open('.gpu/gpu.yaml'))['data']['dataset'])")
  mirror=${GENZOO_DATA_MIRROR:-../shared/data}
  test -d "$mirror/$dataset" || { echo "no $mirror/$dataset: set GENZOO_DATA_MIRROR to a mirror folder"; exit 1; }
  rm -rf ".gpu/mirror/$dataset" && cp -r "$mirror/$dataset" ".gpu/mirror/$dataset"
  git rev-parse HEAD > .gpu/commit
  git diff --quiet HEAD || echo "note: uncommitted changes travel too, but the snapshot names $(cat .gpu/commit)"
  du -sh .gpu
  ;;
run)
  budget=${2:?"run BUDGET: seconds for the parts (the benchmark, if it runs, and packing come on top)"}
  for f in .gpu/gpu.yaml .gpu/commit; do test -f "$f" || { echo "no $f: run prepare before the window"; exit 1; }; done
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" GENZOO_MLFLOW=off GENZOO_DATA_MIRROR="$PWD/.gpu/mirror"
  export GENZOO_COMMIT="$(cat .gpu/commit)" PYTHONUNBUFFERED=1
  out=${OUT:-.gpu/out}
  mkdir -p "$out" && touch .gpu/started
  if [ ! -f metrics/gpu/bench_peers.json ]; then  # issue 33: a window starts with the peer benchmark, once
    timeout "${BENCH_SECONDS:-150}" python3 pipeline/gpu_plan.py bench --params .gpu/gpu.yaml \
      || echo "gpu_window: the benchmark stopped early (exit $?); the peers it finished are in its file"
  fi
  timeout "$((budget + ${EVALUATE_SECONDS:-120}))" python3 pipeline/gpu_plan.py run --params .gpu/gpu.yaml \
    --budget "$budget" || echo "gpu_window: the parts' run ended with exit $?"
  find metrics/gpu -type f -newer .gpu/started | tar czf "$out/metrics_gpu.tgz" -T -
  if [ -d .gpu/checkpoints ]; then tar cf - .gpu/checkpoints | split -b 15M - "$out/checkpoints.tar."; fi
  ls -l "$out"
  ;;
unpack)
  dir=${2:?"unpack DIR: the folder holding what the window sent back"}
  tar xzf "$dir/metrics_gpu.tgz"
  if ls "$dir"/checkpoints.tar.* >/dev/null 2>&1; then rm -rf .gpu/checkpoints && cat "$dir"/checkpoints.tar.* | tar xf -; fi
  git status --short metrics/gpu 2>/dev/null || true  # the snapshots to commit, with the command in run.json
  ;;
*)
  echo "usage: bash pipeline/gpu_window.sh prepare | run BUDGET | unpack DIR"; exit 2
  ;;
esac
