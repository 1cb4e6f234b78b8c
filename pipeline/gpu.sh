#!/usr/bin/env bash
# The gpu profile end to end, then the benchmark, then a snapshot of the results in metrics/gpu/ (commit it):
#   make gpu            (or: bash pipeline/gpu.sh, with genzoo and dvc on PATH, inside a git clone)
# The snapshot keeps what the run used (params.yaml, dvc.lock) beside what it measured, so the README's gpu
# table always names its params, data hash, commit and hardware.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1
start=$(date +%s)
dvc exp run -S profile=gpu
genzoo bench --model vae --batch-size 128 --batch-size 1024 --steps 3000 --compare-eager --out metrics/bench_gpu.json
genzoo bench --model evaluator --batch-size 128 --steps 1000 --compare-eager --out metrics/bench_gpu_evaluator.json
genzoo bench --model gan --batch-size 64 --batch-size 100 --steps 3000 --compare-eager --out metrics/bench_gpu_gan.json
genzoo bench --model dcgan --batch-size 64 --batch-size 128 --steps 2000 --compare-eager --out metrics/bench_gpu_dcgan.json
snap=metrics/gpu
# replace the previous full snapshot (its files, figures/ and plots/), keeping the parts' snapshots in its subfolders
mkdir -p "$snap" && find "$snap" -maxdepth 1 -type f -delete && rm -rf "$snap/figures" "$snap/plots"
cp metrics/*.json "$snap"/
cp -r metrics/figures metrics/plots "$snap"/
cp params.yaml dvc.lock "$snap"/
python3 - "$snap" "$start" <<'PY'
import json, sys, time
from pathlib import Path
snap, start = Path(sys.argv[1]), int(sys.argv[2])
bench = []
for name in ("bench_gpu.json", "bench_gpu_evaluator.json", "bench_gpu_gan.json", "bench_gpu_dcgan.json"):
    bench += json.loads((snap / name).read_text())["results"]
    (snap / name).unlink()
(snap / "bench.json").write_text(json.dumps({"results": bench}, indent=2) + "\n")
(snap / "run.json").write_text(json.dumps({"command": "make gpu (pipeline/gpu.sh: dvc exp run -S profile=gpu)",
                                           "wall_seconds": int(time.time()) - start}, indent=2) + "\n")
PY
rm -f metrics/bench_gpu*.json
genzoo report
echo "gpu results in $snap/: commit that folder (params.yaml and dvc.lock now hold the gpu experiment:"
echo "  git checkout params.yaml dvc.lock && dvc checkout   to return to the default profile)"
