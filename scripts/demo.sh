#!/usr/bin/env bash
# The main job: train the default small MoE (4 layers, hidden 256, 8 experts, k 2, ProbMoE
# exact-k) on Tiny Shakespeare for a few minutes with a byte-level BPE vocabulary of 2,048
# tokens learned from the corpus, then print the validation loss against the unigram
# baseline, the per-layer routing summary and a generated sample.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
steps=${DEMO_STEPS:-600}
probmoe="$build/probmoe"

text=$(scripts/fetch_data.sh tinyshakespeare)

# The vocabulary and the token shards are made once and cached under data/.
tokenizer=data/tokenizers/tinyshakespeare-2048.json
shards=data/prepared/tinyshakespeare-2048
if [ ! -f "$tokenizer" ]; then
  echo "== learning a 2,048-token BPE vocabulary from $text"
  mkdir -p "$(dirname "$tokenizer")"
  "$probmoe" tokenizer train --vocab-size 2048 --out "$tokenizer" "$text"
fi
if [ ! -f "$shards/train.bin" ] || [ "$tokenizer" -nt "$shards/train.bin" ]; then
  echo "== tokenizing $text into $shards"
  rm -rf "$shards"
  "$probmoe" data prepare --out "$shards" --tokenizer "$tokenizer" "$text"
fi

out=runs/demo
if [ -e "$out" ]; then
  rm -rf "$out.previous"
  mv "$out" "$out.previous"
  echo "(the previous demo run is kept in $out.previous)"
fi

echo "== training the default MoE with ProbMoE routing ($steps steps of 8 × 128 tokens)"
"$probmoe" train --data "$shards" --tokenizer "$tokenizer" --out "$out" --steps "$steps" \
  --batch 8 --seq 128 --eval-interval 200 --eval-batches 16 --seed 1

echo
echo "== a sample (probmoe generate --model $out/model --prompt ROMEO:)"
"$probmoe" generate --model "$out/model" --prompt "ROMEO:" --max-new 120 --temperature 0.8 --seed 1
