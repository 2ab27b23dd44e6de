# Thin wrapper over CMake: the README's commands.
BUILD ?= build
BUILD_SAN ?= build-san
JOBS ?= $(shell nproc)

.PHONY: all setup build test bench clean demo fixtures

all: build

setup:
	@bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Every test, in a release build and again under AddressSanitizer + UBSan.
test: build
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPM_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ctest --output-on-failure -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	$(BUILD)/bench/route

# Until the model lands (issue 3), the demo shows every router on ROUTING.md's worked example.
EXAMPLE_LOGITS = 1.3862944 0.4054651 -0.4054651 -1.3862944
demo: build
	@echo "== the k-subset distribution and the ProbMoE router (examples/subset_example.c)"
	@$(BUILD)/examples/subset_example
	@for router in topk probmoe probmoe-dyn densemixer softmoe; do \
	  echo; echo "== probmoe route --router $$router --k 2 --train --marginals"; \
	  echo "$(EXAMPLE_LOGITS)" | $(BUILD)/probmoe route --router $$router --k 2 --train --marginals || exit 1; \
	done
	@echo; echo "Training the default MoE language model arrives with the model (issue 3)."

# Regenerates tests/fixtures from the PyTorch reference in dev/ (needs Debian's python3-torch).
fixtures:
	@dpkg-query -W -f='$${Status}' python3-torch 2>/dev/null | grep -q "install ok installed" || \
	  { echo "make fixtures needs python3-torch: apt-get install -y python3-torch"; exit 1; }
	/usr/bin/python3 dev/make_fixtures.py

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
