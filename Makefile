# The README's two commands on a fresh Debian machine:
#   make demo   install what is missing, build, train BN-LeNet with and without BN
#   make test   install what is missing, build, run the tests
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build test demo asan bench clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_NATIVE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure

demo: build
	bash scripts/demo.sh $(BUILD)/normnet runs/demo

# AddressSanitizer + UndefinedBehaviorSanitizer build of the library and the tests.
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNN_SANITIZE=ON -DNN_NATIVE=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ctest --output-on-failure

bench: build
	$(BUILD)/bench_train

clean:
	rm -rf $(BUILD) build-asan
