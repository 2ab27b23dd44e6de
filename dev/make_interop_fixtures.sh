#!/bin/sh
# Regenerates tests/fixtures/interop/ (dev/README.md, "Checkpoint interoperability"):
#   probmoe/  written by probmoe (dev/write_checkpoint.c), checked by the PyTorch reference,
#             which adds torch_logits.safetensors;
#   torch/    written by the PyTorch reference (dev/check_interop.py --write-torch);
#   probmoe_<family>/, torch_<family>/  the same for qwen2_moe and mixtral.
# Needs cmake and the C toolchain (it builds the write_checkpoint target in $BUILD, default
# build/) and /usr/bin/python3 with python3-torch. Deterministic; a few seconds.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=tests/fixtures/interop

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target write_checkpoint -- --no-print-directory >/dev/null
rm -rf "$OUT/probmoe" "$OUT/torch"
mkdir -p "$OUT"
"$BUILD/dev/write_checkpoint" "$OUT/probmoe"
"$PYTHON" dev/check_interop.py --check "$OUT/probmoe"
"$PYTHON" dev/check_interop.py --write-torch "$OUT/torch"
for family in qwen2_moe mixtral; do
    rm -rf "$OUT/probmoe_$family" "$OUT/torch_$family"
    "$BUILD/dev/write_checkpoint" "$OUT/probmoe_$family" 20260607 "$family"
    "$PYTHON" dev/check_interop.py --check "$OUT/probmoe_$family"
    "$PYTHON" dev/check_interop.py --write-torch "$OUT/torch_$family" --family "$family"
done
