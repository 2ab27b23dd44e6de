#!/bin/sh
# Regenerates tests/fixtures/interop/ (dev/README.md, "Checkpoint interoperability"):
#   probmoe/  written by probmoe (dev/write_checkpoint.c), checked by the PyTorch reference,
#             which adds torch_logits.safetensors;
#   torch/    written by the PyTorch reference (dev/check_interop.py --write-torch);
#   probmoe_<case>/, torch_<case>/  the same for qwen2_moe, mixtral and qwen2_moe_dense
#             (qwen2_moe with dense MLP layers).
#   sh dev/make_interop_fixtures.sh [CASE ...]
# writes only the given cases (olmoe, qwen2_moe, mixtral, qwen2_moe_dense; default all), into
# $OUT (default tests/fixtures/interop): the committed files of one case need not be rewritten
# to add another (a fresh run of an older case may differ from them by float rounding).
# Needs cmake and the C toolchain (it builds the write_checkpoint target in $BUILD, default
# build/) and /usr/bin/python3 with python3-torch. Deterministic; a few seconds.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-tests/fixtures/interop}
[ $# -gt 0 ] || set -- olmoe qwen2_moe mixtral qwen2_moe_dense

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target write_checkpoint -- --no-print-directory >/dev/null
mkdir -p "$OUT"
for case in "$@"; do
    # olmoe's directories came first and carry no suffix
    probmoe="$OUT/probmoe_$case" torch="$OUT/torch_$case"
    [ "$case" != olmoe ] || { probmoe="$OUT/probmoe"; torch="$OUT/torch"; }
    rm -rf "$probmoe" "$torch"
    "$BUILD/dev/write_checkpoint" "$probmoe" 20260607 "$case"
    "$PYTHON" dev/check_interop.py --check "$probmoe"
    "$PYTHON" dev/check_interop.py --write-torch "$torch" --family "$case"
done
