# kpx build. Everything lands in build/. See README.md for the two commands.
#
# Layout: bpf/*.bpf.c are BPF programs (turned into libbpf skeletons),
# every other *.c under bpf/, nft/ and userspace/ is linked into build/kpx.
# userspace/cli/main.c holds main(); the rest also forms build/libkpx.a for tests.

CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
BUILD    := build
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

PKGS     := libbpf libnftnl libmnl json-c libcurl yaml-0.1 libmicrohttpd libnetfilter_conntrack
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lelf -lz

CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	    -D_GNU_SOURCE -DKPX_VERSION=\"$(VERSION)\" \
	    -I. -Iuserspace -I$(BUILD) $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lm

ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_SKELS := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.skel.h,$(BPF_SRCS))
# The target's architecture for the BPF objects' __TARGET_ARCH_* define
# (libbpf's names): the build machine's unless ARCH (uname -m spelling) or
# BPF_ARCH (x86, arm64, ...) is given; the Containerfile passes Docker's
# TARGETARCH. `make BPF_ARCH=arm64 bpf` builds only the BPF objects.
ARCH     ?= $(shell uname -m)
BPF_ARCH ?= $(or $(strip \
	$(if $(filter x86_64 amd64 i386 i686,$(ARCH)),x86) \
	$(if $(filter aarch64 arm64,$(ARCH)),arm64) \
	$(if $(filter armv7l armv6l arm,$(ARCH)),arm) \
	$(if $(filter ppc64le ppc64,$(ARCH)),powerpc) \
	$(if $(filter s390x,$(ARCH)),s390) \
	$(if $(filter riscv64,$(ARCH)),riscv) \
	$(if $(filter loongarch64,$(ARCH)),loongarch)),$(error unknown ARCH '$(ARCH)': set BPF_ARCH))
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror \
	      -Wno-unused-function -I$(BUILD) -Ibpf -I.

LIB_SRCS := $(filter-out %.bpf.c userspace/cli/main.c, \
	      $(wildcard bpf/*.c nft/*.c userspace/*/*.c))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
MAIN_OBJ := $(BUILD)/obj/userspace/cli/main.o

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_SRCS))
BPFT_SRCS := $(wildcard tests/bpf/*.c)
BPFT_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(BPFT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c perf/tools/*.c)
TOOLS     := $(patsubst %.c,$(BUILD)/%,$(notdir $(TOOL_SRCS)))

# libFuzzer targets (tests/fuzz/fuzz_*.c): clang with ASan+UBSan, their
# own objects in build-fuzz/. `make fuzz` runs each FUZZ_SECONDS over its
# corpus (tests/fuzz/run.sh); tests/run.sh's "fuzz" suite runs them briefly.
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=gnu11 -Wall -Wextra -Werror \
		-Wno-missing-field-initializers -Wno-unknown-warning-option \
		-D_GNU_SOURCE \
		-DKPX_VERSION=\"$(VERSION)\" -I. -Iuserspace -I$(BUILD) \
		$(PKG_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRCS))

.PHONY: all deps test unit-test bench demo install clean format soak fuzz fuzz-build bpf k8s
all: $(BUILD)/kpx $(BUILD)/tests/unit_tests $(BUILD)/tests/bpf_tests tools

bpf: $(BPF_OBJS)

$(BUILD)/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(BUILD)/vmlinux.h $(wildcard bpf/*.h bpf/lib/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst -,_,$*) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: %.c $(BPF_SKELS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libkpx.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kpx: $(MAIN_OBJ) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit_tests: $(UNIT_OBJS) $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(BUILD)/tests/bpf_tests: $(BPFT_OBJS) $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

tools: $(TOOLS)
$(BUILD)/%: tests/tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)
$(BUILD)/%: perf/tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)
$(TOOLS): $(LIB_OBJS)

$(FUZZ_BUILD)/obj/%.o: %.c $(BPF_SKELS)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libkpx.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libkpx.a
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
		$(FUZZ_BUILD)/libkpx.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# The real Kubernetes release the cluster tests run against (tests/cluster/):
# kube-apiserver, kube-controller-manager, kube-proxy, kubectl and etcd built
# from the module proxy with the versions tests/cluster/go.mod pins. Cold:
# 18.5 minutes of CPU time (10-14 minutes on an idle 2-core machine); Go's
# build cache makes a rebuild seconds, and the binaries' dependency on
# go.mod/go.sum makes a second `make k8s` a no-op.
# nice: the build must not starve what else runs on the machine.
K8S_RELEASE := v1.37.2
K8S_DIR     := $(BUILD)/k8s
K8S_CMDS    := kube-apiserver kube-controller-manager kube-proxy kubectl
K8S_BINS    := $(addprefix $(K8S_DIR)/,$(K8S_CMDS) etcd)
K8S_GO      := cd tests/cluster && PATH=/usr/local/go/bin:$$PATH HOME=$${HOME:-/root} \
	       GOTOOLCHAIN=local GOFLAGS=-mod=readonly nice -n 10 go build -buildvcs=false
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_RELEASE) \
	       -X k8s.io/component-base/version.gitMajor=1 \
	       -X k8s.io/component-base/version.gitMinor=37 \
	       -X k8s.io/component-base/version.gitTreeState=clean

k8s: $(K8S_BINS)

$(addprefix $(K8S_DIR)/,$(K8S_CMDS)): $(K8S_DIR)/%: tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p $(@D)
	$(K8S_GO) -ldflags "$(K8S_LDFLAGS)" -o $(abspath $@).tmp k8s.io/kubernetes/cmd/$*
	mv $@.tmp $@

$(K8S_DIR)/etcd: tests/cluster/go.mod tests/cluster/go.sum
	@mkdir -p $(@D)
	$(K8S_GO) -o $(abspath $@).tmp go.etcd.io/etcd/server/v3
	mv $@.tmp $@

deps:
	bash scripts/deps.sh

# The README's test command: installs what is missing, builds, runs every suite.
# A failed k8s build does not stop the other suites; tests/integration/
# t_cluster.sh then FAILs (it never skips for a missing build/k8s/ binary).
test: deps
	$(MAKE) all
	$(MAKE) k8s || echo "FAIL make k8s: the real-cluster tests cannot run"
	bash tests/run.sh

unit-test: $(BUILD)/tests/unit_tests
	$(BUILD)/tests/unit_tests

# Long versions of the crash and churn tests (short ones run in make test).
soak: deps
	$(MAKE) all
	SOAK_SECONDS=$${SOAK_SECONDS:-600} bash tests/integration/t_soak.sh
	$(MAKE) BUILD=build-san SANITIZE=1 build-san/kpx build-san/kpx_echo
	KPX_BIN=$(CURDIR)/build-san/kpx KPX_SOAK_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1 \
		SOAK_SECONDS=$${SOAK_SECONDS:-600} bash tests/integration/t_soak.sh
	KPX_CRASH_KILLS=$${KPX_CRASH_KILLS:-20} bash tests/integration/t_crash.sh

bench: deps
	$(MAKE) all
	bash perf/run.sh

demo: deps
	$(MAKE) all
	bash scripts/demo.sh

install: $(BUILD)/kpx
	install -D -m 0755 $(BUILD)/kpx $(DESTDIR)/usr/local/sbin/kpx

format:
	clang-format -i $(LIB_SRCS) userspace/cli/main.c $(UNIT_SRCS) $(BPFT_SRCS)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
