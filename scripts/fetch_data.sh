#!/usr/bin/env bash
# Prints the path of a checked copy of a data set, fetching it if needed:
#   scripts/fetch_data.sh tinyshakespeare | gsm8k-train | gsm8k-test
# Looks in ../shared/data first (next to this repository), then in data/, then downloads
# from the canonical address into data/. Every file is checked against its sha256 sum.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: scripts/fetch_data.sh tinyshakespeare|gsm8k-train|gsm8k-test}
case "$name" in
  tinyshakespeare)
    relative=tinyshakespeare/input.txt
    sha256=86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
    url=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
    ;;
  # GSM8K (openai/grade-school-math, MIT license): one JSON object a line
  gsm8k-train)
    relative=gsm8k/train.jsonl
    sha256=17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465
    url=https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl
    ;;
  gsm8k-test)
    relative=gsm8k/test.jsonl
    sha256=3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14
    url=https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl
    ;;
  *) echo "unknown data set '$name' (known: tinyshakespeare gsm8k-train gsm8k-test)" >&2; exit 2 ;;
esac

matches() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

for candidate in "../shared/data/$relative" "data/$relative"; do
  if matches "$candidate"; then readlink -f "$candidate"; exit 0; fi
  [ -f "$candidate" ] && echo "warning: $candidate does not match its sha256 sum; ignoring it" >&2
done

mkdir -p "data/$(dirname "$relative")"
echo "downloading $url" >&2
if ! curl -fsSL --retry 3 -o "data/$relative.part" "$url"; then
  echo "could not download $name; put $(basename "$relative") at data/$relative (sha256 $sha256)" >&2
  rm -f "data/$relative.part"
  exit 1
fi
if ! matches "data/$relative.part"; then
  echo "the download of $name does not match its sha256 sum; not using it" >&2
  rm -f "data/$relative.part"
  exit 1
fi
mv "data/$relative.part" "data/$relative"
readlink -f "data/$relative"
