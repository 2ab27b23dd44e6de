# Thin wrapper over CMake: the README's commands.
BUILD ?= build
BUILD_SAN ?= build-san
JOBS ?= $(shell nproc)

.PHONY: all setup build test test-fast test-san bench clean demo

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

demo:
	@echo "make demo arrives with the model (issue 3); for now see README.md for 'make test' and 'make bench'."
	@exit 1

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
