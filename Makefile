# Thin entry points; the build itself is CMake (CMakePresets.json).
#   make run    install missing Debian packages, build, run the demo
#   make test   install missing Debian packages, build, run every test tier
# CUDA_ARCHS=80,90,102 overrides the CUDA architectures (default 80;90).
PRESET ?= default
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
comma := ,
CMAKE_ARGS := $(if $(CUDA_ARCHS),-DCMAKE_CUDA_ARCHITECTURES="$(subst $(comma),;,$(CUDA_ARCHS))")

.PHONY: deps configure build run test clean

deps:
	@bash cmake/install_deps.sh

configure: deps
	cmake --preset $(PRESET) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bench/kvs_local_demo

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

clean:
	rm -rf build build-static build-cpu
