#!/usr/bin/env bash
# Prints the path of a checked copy of a data set, fetching it if needed:
#   scripts/fetch_data.sh tinyshakespeare
# Looks in ../shared/data first (next to this repository), then in data/, then downloads
# from the canonical address into data/. Every file is checked against its sha256 sum.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: scripts/fetch_data.sh tinyshakespeare}
case "$name" in
  tinyshakespeare)
    relative=tinyshakespeare/input.txt
    sha256=86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
    url=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
    ;;
  *) echo "unknown data set '$name' (known: tinyshakespeare)" >&2; exit 2 ;;
esac

matches() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

for candidate in "../shared/data/$relative" "data/$relative"; do
  if matches "$candidate"; then echo "$candidate"; exit 0; fi
  [ -f "$candidate" ] && echo "warning: $candidate does not match its sha256 sum; ignoring it" >&2
done

mkdir -p "data/$(dirname "$relative")"
echo "downloading $url" >&2
if ! curl -fsSL --retry 3 -o "data/$relative.part" "$url"; then
  echo "could not download $name; put input.txt at data/$relative (sha256 $sha256)" >&2
  rm -f "data/$relative.part"
  exit 1
fi
if ! matches "data/$relative.part"; then
  echo "the download of $name does not match its sha256 sum; not using it" >&2
  rm -f "data/$relative.part"
  exit 1
fi
mv "data/$relative.part" "data/$relative"
echo "data/$relative"
