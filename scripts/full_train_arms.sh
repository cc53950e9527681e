#!/usr/bin/env bash
# Full-data fine-tuning arms on one GPU: the training split, 2 epochs, several truncation settings,
# each written as a run and summarised in one JSON file.
#
#   scripts/full_train_arms.sh SOURCE MODEL OUT_DIR [ARM ...]
#   ARM = <truncation>:<max_length>   e.g. head:512 head+tail:256
#
# SOURCE is anything `imdb-sentiment download --source` accepts; MODEL a hub id, alias or folder.
# Settings shared by every arm come from IMDB_ARGS (default: 2 epochs, batch 32, lr 5e-5).
set -euo pipefail
source_dir=$1; model=$2; out=$3; shift 3
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(head:512)
cli=(${IMDB_CLI:-imdb-sentiment})
shared_args=(${IMDB_ARGS:---epochs 2 --batch-size 32 --lr 5e-5})
mkdir -p "$out"
data="$out/data"
[ -f "$data/manifest.json" ] || "${cli[@]}" download --source "$source_dir" --output "$data"
for arm in "${arms[@]}"; do
  truncation=${arm%%:*}; length=${arm##*:}
  name="${truncation/+/-}-${length}"
  start=$(date +%s)
  "${cli[@]}" train --model "$model" --data "$data" --max-length "$length" \
    --truncation "$truncation" --output-dir "$out/runs" --run-name "$name" --overwrite \
    --report-to none "${shared_args[@]}" 2>&1 | grep -vE 'it/s\]|s/it\]' | tail -n 20 \
    || echo "arm $arm failed; continuing with the next one"
  mkdir -p "$out/runs/$name"
  echo "{\"arm\": \"$arm\", \"wall_s\": $(( $(date +%s) - start ))}" > "$out/runs/$name/wall.json"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for run in sorted((out / "runs").glob("*/metrics.json")):
    payload = json.loads(run.read_text())
    m = payload["metrics"]
    wall = json.loads((run.parent / "wall.json").read_text())
    rows.append({"run": run.parent.name, "state": payload["state"], "wall_s": wall["wall_s"],
                 **{k: m.get(k) for k in ("accuracy", "f1", "roc_auc", "n", "train_samples",
                                          "train_runtime_s", "train_samples_per_second",
                                          "epochs_completed", "training_precision", "device")},
                 "calibration": m.get("calibration"), "intervals": m.get("intervals")})
(out / "summary.json").write_text(json.dumps(rows, indent=2))
for r in rows:
    print(f"{r['run']:<16} {r['state']:<9} acc {r['accuracy']:.4f} on {r['n']} validation reviews, "
          f"{r['train_samples_per_second']:.0f} train samples/s, wall {r['wall_s']} s")
PY
