# Thin wrapper over CMake: the README's commands.
BUILD ?= build
BUILD_SAN ?= build-san
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS ?= $(shell nproc)

.PHONY: all setup build test bench clean demo fixtures fuzz fuzz-build

all: build

setup:
	@bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

# Every test, in a release build and again under AddressSanitizer + UBSan, then every parser's
# fuzzer for 20 s (fuzz/README.md). (setup also fetches GPT-2's tokenizer files and test
# vectors, which the tokenizer tests read.)
test: build fuzz-build
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPM_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_SAN) -j $(JOBS) -- --no-print-directory
	cd $(BUILD_SAN) && ctest --output-on-failure -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(BUILD_FUZZ) && ctest --output-on-failure -j $(JOBS) -L fuzz

# The libFuzzer harnesses: clang, ASan + UBSan, coverage instrumentation.
fuzz-build: setup
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DPM_FUZZ=ON >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzzers -- --no-print-directory

# Every harness for FUZZ_SECONDS (default 600) each, $(JOBS) at a time.
fuzz: fuzz-build
	bash scripts/fuzz.sh --build $(BUILD_FUZZ) --seconds $(FUZZ_SECONDS) --jobs $(JOBS)

bench: build
	$(BUILD)/bench/route
	$(BUILD)/bench/tokenize
	$(BUILD)/bench/train_step
	$(BUILD)/bench/matmul_sites
	$(BUILD)/bench/adamw
	$(BUILD)/bench/generate
	bash bench/data_parallel.sh $(BUILD)

# Trains the default MoE on Tiny Shakespeare for a few minutes, then shows a sample and the
# routing summary (scripts/demo.sh; DEMO_STEPS=N to change the length).
demo: build
	@BUILD=$(BUILD) bash scripts/demo.sh

# Regenerates tests/fixtures from the PyTorch reference in dev/ (needs Debian's python3-torch).
fixtures: build
	@dpkg-query -W -f='$${Status}' python3-torch 2>/dev/null | grep -q "install ok installed" || \
	  { echo "make fixtures needs python3-torch: apt-get install -y python3-torch"; exit 1; }
	/usr/bin/python3 dev/make_fixtures.py
	BUILD=$(BUILD) sh dev/make_interop_fixtures.sh

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
