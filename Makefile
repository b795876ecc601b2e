# pitot: GNU make, out-of-tree build/, one static library linked by every binary.
#   make            build/pitot, build/pitot-sim, build/pitot-load
#   make test       install missing packages, build, run unit + integration + fuzz replay
#   make asan       the same tests under AddressSanitizer + UBSan (build/asan/)
#   make test-faults  the fault suite (tests/faults/); make soak DURATION=30m
#   make demo       pitot in front of two simulated replicas, with a summary and the status
#                   page's URL (KEEP=1 keeps it; SCREENSHOT=file.png saves the page)
#   make fuzz       libFuzzer builds of the parsers (clang)
#   V=1 verbose, WERROR=1 adds -Werror (CI does).

BUILD     ?= build
CC        ?= cc
V         ?= 0
WERROR    ?= 0
SANITIZE  ?= 0
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

Q := $(if $(filter 1,$(V)),,@)

PKGS := libevent libevent_openssl libevent_pthreads openssl yaml-0.1 hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
        -Wmissing-prototypes -Wvla -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 $(CFLAGS) $(WARN) -D_GNU_SOURCE -MMD -MP
ifeq ($(WERROR),1)
ALL_CFLAGS += -Werror
endif
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ALL_CFLAGS += $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS)
endif
# llhttp in strict mode, for its own sources and for every file including its
# header (the two must agree).
LLHTTP_FLAGS := -DLLHTTP_STRICT_MODE=1
CPPFLAGS += -Iinclude -I$(LLHTTP_INC) $(LLHTTP_FLAGS) $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -lm

LIB_SRCS := $(wildcard src/*/*.c src/*/*/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
LIB := $(BUILD)/libpitot.a

SIM_OBJS  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/sim/*.c))
LOAD_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/load/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/replay_%)

BINS := $(BUILD)/pitot $(BUILD)/pitot-sim $(BUILD)/pitot-load

.PHONY: all deps test unit asan demo fuzz format-check clean
all: $(BINS)

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $@")
	$(Q)$(CC) -std=c11 $(CFLAGS) $(if $(filter 1,$(SANITIZE)),$(SAN_FLAGS)) -I$(LLHTTP_INC) $(LLHTTP_FLAGS) -w -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

# The status page (src/serve/status_page.html) embedded as a C array, included
# by src/serve/status.c from the build directory.
$(BUILD)/gen/status_page.inc: src/serve/status_page.html
	@mkdir -p $(@D)
	$(if $(Q),@echo "  XXD     $@")
	$(Q)xxd -i -n status_page_html $< > $@.tmp && mv $@.tmp $@
$(BUILD)/src/serve/status.o: $(BUILD)/gen/status_page.inc
$(BUILD)/src/serve/status.o: CPPFLAGS += -I$(BUILD)/gen

$(LIB): $(LIB_OBJS) $(LLHTTP_OBJS)
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/pitot: $(BUILD)/proxy/main.o $(LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/pitot-sim: $(SIM_OBJS) $(LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/pitot-load: $(LOAD_OBJS) $(LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Static pattern: only test_*.c are tests; fixture.o (shared fixture loading)
# is linked into each of them, never built as a test of its own.
$(UNIT_BINS): $(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/fixture.o $(LIB)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Fuzz targets double as corpus replayers: linked with a plain main() that feeds
# every file of the seed corpus, so `make test` keeps every found crash fixed.
$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay_main.o $(LIB)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BINS) $(REPLAY_BINS)

# Debian packages the build and the tests need; installed when missing. apt-get
# waits up to 10 minutes for another apt or dpkg to let go of its lock.
# `apt-get update` takes the lists lock, which that option does not cover
# (apt 2.6): APT_UPDATE retries it every 5 s while another apt holds the lock,
# 10 minutes at most, and fails at once on any other error.
APT_GET := apt-get -o DPkg::Lock::Timeout=600
APT_UPDATE = n=0; \
  until out=$$($(APT_GET) update -qq 2>&1); do \
    case "$$out" in *"Could not get lock"*) ;; *) echo "$$out" >&2; exit 1;; esac; \
    [ $$n -eq 0 ] && echo "apt-get update: waiting for another apt to finish"; \
    n=$$((n + 1)); [ $$n -le 120 ] || { echo "$$out" >&2; exit 1; }; sleep 5; \
  done; [ -z "$$out" ] || echo "$$out"
DEB_PKGS := gcc libc6-dev make pkg-config libevent-dev libssl-dev node-llhttp libjsmn-dev \
            libyaml-dev libcmocka-dev prometheus prometheus-alertmanager curl python3 \
            python3-yaml openssl xxd chromium libhiredis-dev redis-server
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    { $(APT_UPDATE); } && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "deps: missing packages; run as root:"; \
	    echo "  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

test: deps
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)BUILD=$(BUILD) bash tests/run.sh

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 CFLAGS="-O1 -g" test

# The fault suite (tests/faults/): backends killed under load, reload under
# load, misbehaving peers, pitot's descriptors and memory counted before and
# after. A few minutes; BUILD=build/asan runs it on the sanitizer build.
.PHONY: test-faults
test-faults: deps
	$(Q)$(MAKE) --no-print-directory $(if $(filter build/asan,$(BUILD)),SANITIZE=1 CFLAGS="-O1 -g") all
	$(Q)BUILD=$(BUILD) SUITE=faults bash tests/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) KEEP=$(KEEP) SCREENSHOT=$(SCREENSHOT) bash tests/demo.sh

# Routing benchmark (not a test): the same pool and open-loop load behind pitot
# least_busy, pitot round_robin and nginx least_conn. BENCH_SECONDS=60 per run.
.PHONY: bench-routing
bench-routing:
	@dpkg-query -W -f='$${Status}' nginx-light 2>/dev/null | grep -q "install ok installed" || \
	dpkg-query -W -f='$${Status}' nginx 2>/dev/null | grep -q "install ok installed" || \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "bench-routing: installing nginx-light"; \
	  { $(APT_UPDATE); } && { DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends nginx-light >/dev/null || \
	    DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends nginx >/dev/null; } || exit 1; \
	else \
	  echo "bench-routing: nginx is missing; run as root:"; \
	  echo "  apt-get install -y nginx-light"; exit 1; \
	fi
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) bash tests/bench/bench_routing.sh

# Soak (not a test): steady streaming load through pitot (pitot-load, two
# pitot-sim) for DURATION (30s, 5m, 30m; default 30m): RSS, open fds and
# requests/s every minute, the growth per hour after warm-up at the end; fails
# over 1% per hour (runs of 10 minutes or more).
.PHONY: soak
soak:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)PITOT_BUILD=$(BUILD) DURATION=$(or $(DURATION),30m) python3 tests/soak/soak.py

# Slow-head clients benchmark (not a test): normal streams through pitot, alone
# and beside 1,000 connections trickling their heads. BENCH_SECONDS=30 per run.
.PHONY: bench-slowloris
bench-slowloris:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) bash tests/bench/bench_slowloris.sh

# Rate-limit admission cost (not a test): in memory, and through a
# redis-server on loopback (started and stopped by the script).
.PHONY: bench-ratelimit
bench-ratelimit: $(BUILD)/bench_ratelimit
	$(Q)BUILD=$(BUILD) bash tests/bench/bench_ratelimit.sh

$(BUILD)/bench_ratelimit: $(BUILD)/tests/bench/bench_ratelimit.o $(LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# pitot side by side with nginx and HAProxy (not a test): streaming latency,
# SSE events and requests per proxy CPU-second, 2,000 and 10,000 slow streams,
# idle RSS, 503 latency, workers, pitot's timing accuracy; writes
# $(BUILD)/bench.json. BENCH_QUICK=1: under 5 minutes; the full run ~20.
.PHONY: bench
bench:
	@need=; \
	dpkg-query -W -f='$${Status}' nginx-light 2>/dev/null | grep -q "install ok installed" || \
	dpkg-query -W -f='$${Status}' nginx 2>/dev/null | grep -q "install ok installed" || need=nginx-light; \
	dpkg-query -W -f='$${Status}' haproxy 2>/dev/null | grep -q "install ok installed" || need="$$need haproxy"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "bench: installing $$need"; \
	    { $(APT_UPDATE); } && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$need >/dev/null || exit 1; \
	  else \
	    echo "bench: $$need missing; run as root:"; \
	    echo "  apt-get install -y $$need"; exit 1; \
	  fi; \
	fi
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) bash tests/bench/bench.sh

FUZZ_CC ?= clang
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs clang: apt-get install clang"; exit 1; }
	$(Q)$(MAKE) --no-print-directory BUILD=build/fuzzlib CC=$(FUZZ_CC) CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" $(BUILD:build=build/fuzzlib)/libpitot.a
	@mkdir -p build/fuzz
	$(Q)for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  echo "  FUZZ    build/fuzz/$$n"; \
	  $(FUZZ_CC) $(CPPFLAGS) -std=c11 -O1 -g -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	    -o build/fuzz/$$n $$f build/fuzzlib/libpitot.a $(LDLIBS) || exit 1; done

format-check:
	$(Q)clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
