#!/usr/bin/env bash
# Wall time of the whole DAG, stage by stage, as a new user gets it after `make install`: a fresh clone of HEAD,
# every stage forced, the installed .venv reused with the clone's own src/ first on PYTHONPATH (so src/ must be
# committed, and this checkout can be edited while it runs). Run it on otherwise idle cores: anything else running
# inflates every number.
#   bash pipeline/time_dag.sh [profile [override ...]]   -> metrics/timing/<profile>_dag.json (commit it)
# JOBS=N (default 2, as `make run`): stages run at once by `genzoo repro`; the file keeps each stage's span.
# Hydra overrides (`engine.cpu_precision=bf16`) change the clone's params.yaml; name the timing file with
# TIMING_NAME=<name> (metrics/timing/<name>.json) so the profile's own stays.
# With KEEP_METRICS=DIR the run's metrics/ folder, dvc.lock and stage logs (DIR/logs) are kept there, to set beside
# the committed ones:
#   python pipeline/reproduced.py DIR metrics   (which numbers a fresh clone reproduces)
set -euo pipefail
keep=${KEEP_METRICS:+$(realpath -m "$KEEP_METRICS")}
cd "$(dirname "$0")/.."
root=$(pwd)
profile=${1:-cpu}
jobs=${JOBS:-2}
overrides=("${@:2}")
name=${TIMING_NAME:-${profile}_dag}
git diff --quiet HEAD -- src pipeline params.yaml dvc.yaml || { echo "commit src/, pipeline/ and the params first"; exit 1; }
test -x .venv/bin/dvc || { echo "no .venv: run make install first"; exit 1; }
if [ -z "${GENZOO_DATA_MIRROR:-}" ] && [ -d ../shared/data ]; then
  export GENZOO_DATA_MIRROR="$(cd ../shared/data && pwd)"
fi
export PATH="$root/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/main"
ln -s "$root/.venv" "$work/main/.venv"
cd "$work/main"
export PYTHONPATH="$work/main/src${PYTHONPATH:+:$PYTHONPATH}"  # the clone's code, not this checkout's editable one
if [ "$profile" != cpu ] || [ ${#overrides[@]} -gt 0 ]; then
  python pipeline/compose.py "profile=$profile" "${overrides[@]}"
fi
mkdir -p "$root/metrics/timing"
genzoo repro --force --jobs "$jobs" --timing "$work/stages.json"  # as `make run` runs it, every stage forced
python3 - "$work/stages.json" "$work/timing.json" "$profile" "$jobs" "${overrides[@]}" <<'PY'
import json, os, sys
from pathlib import Path

from genzoo.engine.io import write_json
from genzoo.engine.tracking import record_provenance  # commit, dirty, command, hardware: as every file has

stages, out, profile, jobs, overrides = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
run = json.load(open(stages))
command = f"JOBS={jobs} bash pipeline/time_dag.sh {profile}" + "".join(f" {o}" for o in overrides)
write_json(Path(out), {"profile": profile, **record_provenance("cpu", command), "cores": os.cpu_count(), **run})
print(f"total {run['total_seconds']:.0f} s")
PY
mv "$work/timing.json" "$root/metrics/timing/${name}.json"  # only a run that finished (pipefail)
if [ -n "$keep" ]; then
  rm -rf "$keep" && mkdir -p "$(dirname "$keep")" && cp -r metrics "$keep" && cp dvc.lock "$keep/dvc.lock"
  cp -r .dvc/tmp/repro "$keep/logs"  # each stage's output (evaluate's says how long each model took)
  echo "kept this run's metrics in $keep"
fi
echo "wrote metrics/timing/${name}.json"
