# The README's two commands on a fresh Debian machine:
#   make demo   install what is missing, build, train BN-LeNet with and without BN
#   make test   install what is missing, build, run the tests
BUILD ?= build
space := $(subst ,, )
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build test demo asan bench clean fuzz fuzz-build fuzz-long valgrind portable-test

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

# A portable build (NN_NATIVE=OFF, as packages are built) running the kernel tests on both
# variants of the runtime dispatch: the best one of the CPU, and the generic one (the tests'
# *_generic runs, NN_CPU=generic); test_dispatch checks that the two give the same bits.
PORTABLE_TESTS = test_kernels test_batchnorm test_groupnorm test_pool test_gradcheck test_batchnorm_torch \
                 test_groupnorm_layers test_lenet_torch test_dispatch
portable-test: deps
	cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_NATIVE=OFF -DNN_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-portable -j$(JOBS) --target $(PORTABLE_TESTS)
	cd build-portable && ctest --output-on-failure -R '^($(subst $(space),|,$(strip $(PORTABLE_TESTS))))(_generic)?$$'

# AddressSanitizer + UndefinedBehaviorSanitizer build of the library and the tests.
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNN_SANITIZE=ON -DNN_NATIVE=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ctest --output-on-failure

bench: build
	$(BUILD)/bench_train

# libFuzzer targets (fuzz/, clang, ASan + UBSan): `make fuzz` runs each for FUZZ_SECONDS
# (CI smoke, 20 s); `make fuzz-long` for FUZZ_LONG_SECONDS each (default 1800) and prints
# the executions per target. A crash fails the run; its input is left in build-fuzz/fuzz-crashes/.
FUZZ_SECONDS ?= 20
FUZZ_LONG_SECONDS ?= 1800
fuzz-build: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_FUZZ=ON -DBUILD_TESTING=OFF -DNN_BUILD_BENCH=OFF
	cmake --build build-fuzz -j$(JOBS) --target fuzz_targets

fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_SECONDS) build-fuzz

fuzz-long: fuzz-build
	bash fuzz/run.sh $(FUZZ_LONG_SECONDS) build-fuzz

# A short training under valgrind memcheck on a portable build (valgrind lacks AVX-512).
valgrind: deps
	cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_NATIVE=OFF -DBUILD_TESTING=OFF -DNN_BUILD_BENCH=OFF
	cmake --build build-valgrind -j$(JOBS) --target normnet_cli
	bash scripts/valgrind.sh build-valgrind/normnet lenet
	bash scripts/valgrind.sh build-valgrind/normnet cnn

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-valgrind build-portable
