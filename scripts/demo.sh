#!/usr/bin/env bash
# The main job: train the default small MoE (4 layers, hidden 256, 8 experts, k 2, ProbMoE
# exact-k) on Tiny Shakespeare for a few minutes, then print the validation loss against the
# unigram baseline, a generated sample and the per-layer routing summary.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
steps=${DEMO_STEPS:-600}

data=$(scripts/fetch_data.sh tinyshakespeare)
out=runs/demo
if [ -e "$out" ]; then
  rm -rf "$out.previous"
  mv "$out" "$out.previous"
  echo "(the previous demo run is kept in $out.previous)"
fi

echo "== training the default MoE with ProbMoE routing on $data ($steps steps)"
"$build/probmoe" train --data "$data" --out "$out" --steps "$steps" --batch 8 --seq 128 \
  --eval-interval 200 --eval-batches 16 --seed 1

echo
echo "== a sample (probmoe generate --model $out --prompt 'ROMEO:')"
"$build/probmoe" generate --model "$out" --prompt "ROMEO:" --max-new 300 --temperature 0.8 --seed 1
