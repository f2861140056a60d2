# forja - the two commands of the README, and a few conveniences.
#
#   make demo    install what is missing, build, run the lab's flow as far as forja goes
#   make check   install what is missing, build, run the whole test suite
#   make bench   run the benchmarks in bench/ (see docs/benchmarks.md)
#   make asan    build and test with AddressSanitizer + UndefinedBehaviorSanitizer

BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all build deps deps-build deps-demo demo check bench asan format clean

all: build

deps-build:
	@scripts/install-deps --build

deps-demo:
	@scripts/install-deps --demo

deps:
	@scripts/install-deps

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null

build: deps-build $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) > /dev/null

demo: deps-demo build
	@scripts/demo $(BUILD)/forja

check: deps build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: deps build
	@bench/tokenizer/run $(BUILD)
	@bench/train_step/run $(BUILD)
	@bench/finetune/run $(BUILD)
	@bench/api/run $(BUILD)
	@bench/serve/run $(BUILD)

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFORJA_SANITIZE=ON > /dev/null
	cmake --build build-asan -j $(JOBS) > /dev/null
	cd build-asan && ctest --output-on-failure -j $(JOBS)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c')

clean:
	rm -rf $(BUILD) build-asan
