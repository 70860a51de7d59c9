# pod-stats: `make test` and `make run` take a fresh Debian 12 machine to working.
# Run as root (or with sudo): the dependencies come from apt, and BPF needs root.

SHELL := /bin/bash
ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BUILD := build
VENV := .venv
PYTHON ?= python3
CLANG ?= clang-19
LLVM_STRIP ?= llvm-strip-19
BPFTOOL ?= bpftool
# Root needs no sudo (and these machines have none); anyone else does.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# prometheus is here for promtool (tests/test_deploy.py checks and unit-tests deploy/'s rules).
# On a host run by systemd its package also enables and starts a Prometheus server on :9090;
# no test uses that server (`systemctl disable --now prometheus` if you do not want it).
# nftables: the tcp tests' packet loss in a network namespace (tc netem is not in every kernel).
# chromium (and a font): the HTML report's tests open it headless.
APT_PACKAGES := clang-19 llvm-19 bpftool libelf-dev zlib1g-dev pkg-config dpkg-dev \
	gcc libc6-dev make python3 python3-venv python3-dev runc busybox-static \
	prometheus openssl gcc-multilib liburing-dev clang-format-19 nftables \
	chromium fonts-dejavu-core

# The libbpf we compile against is the one that runs (statically linked):
# Debian bookworm's source package, upstream tarball pinned by hash.
LIBBPF_VERSION := 1.1.2
LIBBPF_ORIG_SHA256 := b50ab60637fb713db78aa98e6ca911ddf13c0799d498a1f6ec03ebffc7dca588
LIBBPF_PREFIX := $(BUILD)/libbpf/usr
LIBBPF_A := $(LIBBPF_PREFIX)/lib/libbpf.a
DEB_SRC_LIST := /etc/apt/sources.list.d/pod-stats-deb-src.sources

BPF_OBJ := $(BUILD)/pod_stats.bpf.o
SKEL := $(BUILD)/pod_stats.skel.h
FFI_EXT := pod_stats/_pod_stats_ffi.abi3.so
# the extension's C: one header per unit, all compiled by cffi (pod_stats/_ffi_build.py)
FFI_SOURCES := $(wildcard csrc/ffi/*.c csrc/ffi/*.h)
# Test and demo tooling (devtools/pod_stats_dev: the miniature node, its workload, the demo):
# editable in the venv, never in the wheel. The workload is found in build/ by path.
DEVTOOLS_STAMP := $(VENV)/.devtools-installed
WORKLOAD := $(BUILD)/workload
# Test helpers (not shipped): exactly N opens by one route, 64-bit (syscalls, io_uring) and
# 32-bit (ia32 compat syscalls); static, for the kernel matrix's compiler-less guests too.
HELPERS := $(BUILD)/helpers/open_routes $(BUILD)/helpers/open_routes32
VENV_STAMP := $(VENV)/.installed

.PHONY: all deps apt-deps venv bpf libbpf build test test-unit test-wheel wheel lint format run demo vmlinux clean distclean

all: build

## deps: Debian packages + the Python virtualenv
deps: apt-deps venv

apt-deps:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); }

venv: $(VENV_STAMP)

# Every install takes its versions from constraints.txt (pyproject.toml has ranges).
PIP_INSTALL := $(VENV)/bin/pip install -q -c constraints.txt

$(VENV_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	# build requirements too: the extension is built without isolation, against this venv
	$(PIP_INSTALL) setuptools wheel cffi
	touch $@

## libbpf: PIC static libbpf from Debian's source package
libbpf: $(LIBBPF_A)

$(LIBBPF_A):
	@[ -f $(DEB_SRC_LIST) ] || { printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' \
		'Suites: bookworm bookworm-updates' 'Components: main' \
		'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | $(SUDO) tee $(DEB_SRC_LIST) >/dev/null; \
		$(SUDO) apt-get update -qq; }
	rm -rf $(BUILD)/libbpf-src && mkdir -p $(BUILD)/libbpf-src
	cd $(BUILD)/libbpf-src && apt-get source --download-only -qq libbpf
	echo "$(LIBBPF_ORIG_SHA256)  $(BUILD)/libbpf-src/libbpf_$(LIBBPF_VERSION).orig.tar.gz" | sha256sum -c --quiet
	tar -xzf $(BUILD)/libbpf-src/libbpf_$(LIBBPF_VERSION).orig.tar.gz -C $(BUILD)/libbpf-src
	mkdir -p $(BUILD)/libbpf-obj
	$(MAKE) -s -C $(BUILD)/libbpf-src/libbpf-$(LIBBPF_VERSION)/src BUILD_STATIC_ONLY=1 \
		EXTRA_CFLAGS='-fPIC -O2' OBJDIR=$(abspath $(BUILD)/libbpf-obj) \
		DESTDIR=$(abspath $(BUILD)/libbpf) PREFIX=/usr LIBDIR=/usr/lib install

## bpf: the BPF object and its skeleton, for this machine (the editable build);
## bpf-x86, bpf-arm64: for the wheel of that architecture, in build/bpf-<arch>/
bpf: $(SKEL)

# $(call compile_bpf,ARCH): the BPF object of kernel architecture ARCH (vmlinux/ARCH), $< → $@
define compile_bpf
	@mkdir -p $(@D)
	$(CLANG) -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(1) \
		-I vmlinux/$(1) -I csrc/bpf -I $(LIBBPF_PREFIX)/include -c $< -o $@
	# keep BTF (CO-RE needs it), drop DWARF
	$(LLVM_STRIP) -g $@
endef

$(BPF_OBJ): csrc/bpf/pod_stats.bpf.c csrc/bpf/pod_stats.h vmlinux/$(ARCH)/vmlinux.h $(LIBBPF_A)
	$(call compile_bpf,$(ARCH))

$(BUILD)/bpf-%/pod_stats.bpf.o: csrc/bpf/pod_stats.bpf.c csrc/bpf/pod_stats.h vmlinux/%/vmlinux.h $(LIBBPF_A)
	$(call compile_bpf,$*)

$(SKEL): $(BPF_OBJ)
	$(BPFTOOL) gen skeleton $< name pod_stats > $@

$(BUILD)/bpf-%/pod_stats.skel.h: $(BUILD)/bpf-%/pod_stats.bpf.o
	$(BPFTOOL) gen skeleton $< name pod_stats > $@

.PHONY: bpf-x86 bpf-arm64
bpf-x86 bpf-arm64: bpf-%: $(BUILD)/bpf-%/pod_stats.skel.h
# kept beside the skeleton (which embeds it): the object is what bpftool and llvm-objdump read
.PRECIOUS: $(BUILD)/bpf-%/pod_stats.bpf.o

## vmlinux: regenerate the checked-in vmlinux.h from this machine's BTF
vmlinux:
	@mkdir -p vmlinux/$(ARCH)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

## vmlinux-arm64: regenerate vmlinux/arm64/vmlinux.h from the BTF in Debian's arm64 cloud kernel
## (the kernel of `make kernels`' arm64 row), downloaded with a private apt configuration
VMLINUX_ARM64_PACKAGE := linux-image-6.1.0-50-cloud-arm64
VMLINUX_ARM64_APT := $(BUILD)/vmlinux-arm64/apt
.PHONY: vmlinux-arm64
vmlinux-arm64:
	rm -rf $(BUILD)/vmlinux-arm64 && mkdir -p $(VMLINUX_ARM64_APT)/lists/partial \
		$(VMLINUX_ARM64_APT)/cache/archives/partial $(VMLINUX_ARM64_APT)/sources.list.d
	: > $(VMLINUX_ARM64_APT)/sources.list
	printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' 'Components: main' \
		'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > $(VMLINUX_ARM64_APT)/sources.list.d/kernel.sources
	apt_options="-q -o Dir::Etc::SourceList=$(abspath $(VMLINUX_ARM64_APT))/sources.list \
		-o Dir::Etc::SourceParts=$(abspath $(VMLINUX_ARM64_APT))/sources.list.d \
		-o Dir::State::Lists=$(abspath $(VMLINUX_ARM64_APT))/lists -o Dir::Cache=$(abspath $(VMLINUX_ARM64_APT))/cache \
		-o APT::Sandbox::User=root -o Debug::NoLocking=1 -o APT::Architectures::=arm64"; \
	apt-get $$apt_options update >/dev/null && \
	cd $(BUILD)/vmlinux-arm64 && apt-get $$apt_options download $(VMLINUX_ARM64_PACKAGE):arm64
	$(PYTHON) packaging/btf_from_deb.py $(BUILD)/vmlinux-arm64/$(VMLINUX_ARM64_PACKAGE)_*.deb $(BUILD)/vmlinux-arm64/vmlinux.btf
	@mkdir -p vmlinux/arm64
	$(BPFTOOL) btf dump file $(BUILD)/vmlinux-arm64/vmlinux.btf format c > vmlinux/arm64/vmlinux.h

## build: the cffi extension (skeleton + libbpf) and the package, editable, in the venv
build: $(FFI_EXT) $(DEVTOOLS_STAMP) $(WORKLOAD) $(HELPERS)

$(FFI_EXT): $(SKEL) $(LIBBPF_A) pod_stats/_ffi_build.py $(FFI_SOURCES) csrc/bpf/pod_stats.h $(VENV_STAMP)
	$(PIP_INSTALL) --no-build-isolation -e '.[test]'
	@touch $@

$(DEVTOOLS_STAMP): devtools/pyproject.toml $(VENV_STAMP)
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e devtools
	touch $@

# static test/demo workload run inside the miniature node's containers
$(WORKLOAD): devtools/pod_stats_dev/workload.c
	@mkdir -p $(@D)
	gcc -static -O2 -Wall -Wextra -o $@ $<

$(BUILD)/helpers/open_routes: tests/helpers/open_routes.c
	@mkdir -p $(@D)
	gcc -static -O2 -Wall -Wextra -o $@ $< -luring

$(BUILD)/helpers/open_routes32: tests/helpers/open_routes.c
	@mkdir -p $(@D)
	gcc -m32 -static -O2 -Wall -Wextra -o $@ $<

# The kernel matrix's arm64 guest: open_routes for aarch64, compiled in a debootstrap'd arm64
# build chroot under qemu-user-static (Debian's cross gcc cannot be installed beside
# gcc-multilib, which open_routes32 needs). No 32-bit twin: ia32 compat syscalls are x86-64's.
ARM64_BUILD_ROOT := $(BUILD)/rootfs/build-bookworm-arm64
ARM64_HELPERS := $(BUILD)/helpers/arm64/open_routes

$(ARM64_BUILD_ROOT)/.rootfs:
	$(SUDO) packaging/rootfs.sh arm64 bookworm $(ARM64_BUILD_ROOT) gcc,libc6-dev,liburing-dev

$(BUILD)/helpers/arm64/open_routes: tests/helpers/open_routes.c $(ARM64_BUILD_ROOT)/.rootfs
	@mkdir -p $(@D)
	cp $< $(ARM64_BUILD_ROOT)/tmp/open_routes.c
	$(SUDO) chroot $(ARM64_BUILD_ROOT) gcc -static -O2 -Wall -Wextra -o /tmp/open_routes /tmp/open_routes.c -luring
	mv $(ARM64_BUILD_ROOT)/tmp/open_routes $@

## test: lint, the wheel on a bare node, then every test, BPF and container tests included (needs root)
test: deps build lint
	$(MAKE) test-wheel
	$(SUDO) $(VENV)/bin/pytest -q --require-bpf

## wheel: dist/pod_stats-<version>-cp39-abi3-manylinux_*_{x86_64,aarch64}.whl, one per architecture:
## the BPF object, skeleton and static libbpf in the extension, libelf grafted in by auditwheel
## (packaging/build_wheel.sh: built in a Debian 11 chroot of that architecture, arm64 under qemu)
WHEEL_ARCHES := amd64 arm64
# Debian's architecture names → the kernel's (vmlinux/, bpf-%) and the machine's (wheel tags)
kernel_arch_amd64 := x86
kernel_arch_arm64 := arm64
machine_amd64 := x86_64
machine_arm64 := aarch64
LIBBPF_TARBALL := $(BUILD)/libbpf-src/libbpf_$(LIBBPF_VERSION).orig.tar.gz
# what goes into a wheel (README.md: its long description); the stamp keeps `make kernels`
# after `make test` from building both again
WHEEL_INPUTS := pyproject.toml setup.py constraints.txt README.md $(wildcard pod_stats/*.py) $(FFI_SOURCES) \
	csrc/bpf/pod_stats.h packaging/build_wheel.sh packaging/wheelhouse.sh packaging/rootfs.sh
.PHONY: $(addprefix wheel-,$(WHEEL_ARCHES))
wheel: deps $(addprefix wheel-,$(WHEEL_ARCHES))
$(addprefix wheel-,$(WHEEL_ARCHES)): wheel-%: deps $(BUILD)/wheel-%.built
$(BUILD)/wheel-amd64.built: $(BUILD)/bpf-x86/pod_stats.skel.h
$(BUILD)/wheel-arm64.built: $(BUILD)/bpf-arm64/pod_stats.skel.h
$(BUILD)/wheel-%.built: $(WHEEL_INPUTS) $(LIBBPF_A) $(VENV_STAMP)
	rm -f $@ dist/pod_stats-*_$(machine_$*).whl
	$(SUDO) packaging/build_wheel.sh $* $(BUILD)/bpf-$(kernel_arch_$*) $(LIBBPF_TARBALL) dist
	touch $@

## test-wheel: the x86_64 wheel installed offline, with constraints.txt, into debootstrap'd Debian 11
## (Python 3.9) and Debian 12 (Python 3.11) chroots with no compiler, bpftool, libbpf or libelf,
## and run there as root. build/chroot (Debian 12, the wheel in /opt/pod-stats) is `make kernels`' guest.
test-wheel: wheel
	$(SUDO) tests/wheel_in_chroot.sh bullseye $(BUILD)/chroot-bullseye dist/pod_stats-*_$(machine_amd64).whl
	$(SUDO) tests/wheel_in_chroot.sh bookworm $(BUILD)/chroot dist/pod_stats-*_$(machine_amd64).whl

## image: the node agent's OCI image for amd64 and arm64 as one OCI index, nothing pulled from a
## registry: a debootstrap'd Debian root file system per architecture (arm64 under qemu-user) with
## the wheel and its dependencies installed offline, packed by umoci (packaging/image.sh,
## image_index.py). $(IMAGE_LAYOUT) is an OCI layout tagged <version> (the index) and
## <version>-<arch>; $(IMAGE_LAYOUT).tar the same as an oci-archive. Push both architectures with
##   skopeo copy --all oci:$(IMAGE_LAYOUT):<version> docker://REGISTRY/pod-stats:<version>
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE_ARCHES ?= amd64 arm64
IMAGE_DIR := $(BUILD)/image
IMAGE_LAYOUT := $(IMAGE_DIR)/pod-stats-$(VERSION).oci
IMAGE_APT_PACKAGES := umoci skopeo debootstrap
.PHONY: image image-test
image: wheel
	@dpkg -s $(IMAGE_APT_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(IMAGE_APT_PACKAGES); }
	rm -rf $(IMAGE_LAYOUT) $(IMAGE_LAYOUT).tar
	$(foreach arch,$(IMAGE_ARCHES),$(SUDO) packaging/image.sh $(arch) \
		$(firstword $(wildcard dist/pod_stats-$(VERSION)-*_$(machine_$(arch)).whl) dist/no-$(machine_$(arch))-wheel) \
		$(IMAGE_LAYOUT) &&) true
	$(PYTHON) packaging/image_index.py $(IMAGE_LAYOUT) $(VERSION) $(IMAGE_DIR) $(addprefix $(VERSION)-,$(IMAGE_ARCHES))
	skopeo copy -q --all oci:$(IMAGE_LAYOUT):$(VERSION) oci-archive:$(IMAGE_LAYOUT).tar:$(VERSION)

## image-test: the amd64 image run by runc under deploy/daemonset.yaml's securityContext, mounts,
## args and env (tests/test_image.py derives them from the manifest) beside miniature-node pods:
## /healthz, exact opens and names on /metrics, `run`, `files` and `procs` exec'ed inside it; the
## arm64 image's config and ELF files, and its `pod-stats --version` under qemu-user
image-test: deps build image
	$(SUDO) env POD_STATS_IMAGE=$(IMAGE_LAYOUT) POD_STATS_IMAGE_TAG=$(VERSION) \
		$(VENV)/bin/pytest -q --require-bpf -m image tests/test_image.py

## kernels: the VM smoke suite on each kernel of tests/kernels/matrix.tsv (Debian 5.10, 6.1, 6.1 booted
## with preempt=full, 6.1 PREEMPT_RT under qemu-system-x86_64, 6.1 arm64 under qemu-system-aarch64 with
## the aarch64 wheel) and this machine's, then the README's compatibility table from that run
.PHONY: kernels
kernels: test-wheel wheel-arm64 $(ARM64_HELPERS)
	$(SUDO) $(PYTHON) tests/kernels/run_matrix.py
	$(PYTHON) tests/kernels/compat_table.py --readme README.md

## lint: pre-commit's hooks (.pre-commit-config.yaml) over every file: ruff (lint and format
## check) and mypy over pod_stats, tests, bench and devtools; clang-format over the C and BPF
PY_SOURCES := pod_stats tests bench devtools
C_SOURCES := $(wildcard csrc/bpf/*.[ch] csrc/ffi/*.[ch] bench/probes/*.c bench/tools/*.c) \
	tests/helpers/open_routes.c devtools/pod_stats_dev/workload.c
CLANG_FORMAT ?= clang-format-19
lint: build
	$(VENV)/bin/pre-commit run --all-files

## format: rewrite the Python and C sources in the project's style (.clang-format for the C)
format: venv
	$(VENV)/bin/ruff check -q --fix $(PY_SOURCES)
	$(VENV)/bin/ruff format -q $(PY_SOURCES)
	$(CLANG_FORMAT) -i $(C_SOURCES)

test-unit: deps build
	$(VENV)/bin/pytest -q -m 'not bpf and not containers'

## run: the live table of this node's pods; a miniature node of real containers where there are none
run: deps build
	@if [ -n "$$(ls -A /var/log/pods 2>/dev/null)" ]; then \
		$(SUDO) $(VENV)/bin/pod-stats run; \
	else \
		echo "no kubelet pods on this machine: starting the demo (real runc containers, removed on exit)"; \
		$(SUDO) $(VENV)/bin/python -m pod_stats_dev.demo $(DEMO_ARGS); \
	fi

## demo: a miniature node of real runc containers watched by `pod-stats run` (devtools/; not in the wheel);
## e.g. make demo DEMO_ARGS='--count 3 --json'
demo: deps build
	$(SUDO) $(VENV)/bin/python -m pod_stats_dev.demo $(DEMO_ARGS)

clean:
	rm -rf $(BUILD)/pod_stats.* $(BUILD)/bpf-* $(BUILD)/wheel-*.built $(BUILD)/cffi $(BUILD)/lib.* $(BUILD)/temp.* $(BUILD)/bdist.* dist \
		$(FFI_EXT) $(WORKLOAD) pod_stats/_pod_stats_ffi.c

distclean: clean
	rm -rf $(BUILD) $(VENV) *.egg-info

## soak: 2,000 pods (and non-pod units, restarts, nested cgroups, sub-interval containers)
## created and removed over 2 minutes under serve and run --json; every figure exact and never
## going down, the agent's map, index, name cache and RSS back at baseline (CI runs a short form)
.PHONY: soak
soak: deps build
	$(SUDO) env POD_STATS_SOAK_PODS=2000 POD_STATS_SOAK_SECONDS=120 $(VENV)/bin/pytest -q -s tests/test_soak.py

## bench: benchmarks of issue #7 → bench/results.json and a table (needs root; < 10 min); bench/README.md
## has the method. QUICK=1: fewer rounds and pods (a smoke test); BENCH_FLAGS: more flags of bench/run.py
BENCH_APT_PACKAGES := bpftrace libbpf-tools
.PHONY: bench
bench: deps build
	@dpkg -s $(BENCH_APT_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(BENCH_APT_PACKAGES); }
	$(MAKE) -C bench run BUILD=$(abspath $(BUILD)) VENV=$(abspath $(VENV)) CLANG=$(CLANG) ARCH=$(ARCH)
