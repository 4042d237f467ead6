# Thin entry points; the build itself is CMake (CMakePresets.json).
#   make run    install missing Debian packages, build, start kvshuttled and show it working
#   make test   install missing Debian packages, build, run every test tier
# CUDA_ARCHS=80,90,102 overrides the CUDA architectures (default 80;90).
PRESET ?= default
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
comma := ,
CMAKE_ARGS := $(if $(CUDA_ARCHS),-DCMAKE_CUDA_ARCHITECTURES="$(subst $(comma),;,$(CUDA_ARCHS))")

.PHONY: deps configure build run test clean venv

deps:
	@bash cmake/install_deps.sh

configure: deps
	cmake --preset $(PRESET) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build venv
	$(BUILD_DIR)/bench/kvs_local_demo
	bash deploy/dev/run.sh $(BUILD_DIR)

# Python tools (server reflection client) in a venv from PyPI.
venv: .venv/.stamp
.venv/.stamp: client/requirements-tools.txt
	python3 -m venv .venv
	.venv/bin/pip install -q -r client/requirements-tools.txt
	touch $@

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

clean:
	rm -rf build build-static build-cpu
