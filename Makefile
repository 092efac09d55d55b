# schedtop: `make run` starts it, `make check` passes the tests. Both install what
# they need on a fresh Debian 12 machine (as root): Debian packages, .venv,
# libbpf >= 1.4 and, for check, the sched_ext guest kernel.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCHEDTOP := $(VENV)/bin/schedtop
export SCHEDTOP_CACHE ?= $(HOME)/.cache/schedtop

# Debian 12 packages: BPF toolchain, guest, terminal tests, benchmark peers.
APT_PKGS := clang llvm libelf-dev zlib1g-dev pkg-config make gcc \
	qemu-system-x86 kmod zstd dpkg-dev busybox-static tmux htop stress-ng rt-tests linux-perf \
	libbpf-tools bpftool python3-venv pipx file debian-archive-keyring prometheus prometheus-node-exporter \
	gamemode dbus \
	mangohud vulkan-tools mesa-vulkan-drivers xvfb \
	chromium fonts-dejavu-core

# CO-RE objects in schedtop/bpf/obj/<machine>/, where the wheel has them too; the flags and
# the libbpf headers' search are in hatch_build.py (the wheel's build hook) alone.
ARCH := $(shell uname -m)
BPF_SRC := $(wildcard bpf/*.bpf.c)
BPF_OBJ := $(patsubst bpf/%.bpf.c,schedtop/bpf/obj/$(ARCH)/%.bpf.o,$(BPF_SRC))

.PHONY: all run check lint fuzz deps venv bpf libbpf kernel test test-host test-guest wheel wheel-smoke check-lowest \
	test-matrix matrix kernels-table screenshots bench clean

# The smoke set (tests/guest/smoke) in make check: one boot per kernel, only kernels whose smoke
# passes (README "Kernels"). `make matrix` runs every kernel of the matrix and keeps the results
# for `make kernels-table`.
MATRIX_KERNELS ?= 6.18 sid 7.3 trixie bookworm

all: venv bpf

run: deps venv libbpf bpf
	$(SCHEDTOP) $(ARGS)

# The whole suite: host tests, then the guest tests in one boot of the sched_ext kernel.
check: lint deps venv libbpf bpf kernel
	@rc=0; for part in test-host test-guest wheel-smoke test-matrix; do s=$$(date +%s); $(MAKE) $$part || rc=1; \
		echo "make check: $$part took $$(( $$(date +%s) - s )) s"; done; \
	if [ $$rc = 0 ]; then echo "make check: host, guest and kernel-matrix suites passed"; else echo "make check: FAILED (see above)"; fi; exit $$rc

deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install: $$missing" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml tests/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -c tests/constraints.txt
	touch $@

# libbpf >= 1.4: the system's if new enough, else built from Debian's source package.
libbpf: venv
	$(SCHEDTOP) lab libbpf

# The sched_ext guest kernel (Debian sid's, through a private apt dir; never /etc/apt),
# cached under $(SCHEDTOP_CACHE)/kernels. A warm cache does no network I/O.
kernel: venv
	$(SCHEDTOP) lab fetch
	@for k in $(MATRIX_KERNELS); do $(SCHEDTOP) lab fetch --kernel $$k || exit 1; done

bpf: $(BPF_OBJ)

schedtop/bpf/obj/$(ARCH)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) hatch_build.py | libbpf
	@if command -v clang >/dev/null; then echo "clang $< -> $@"; $(PYTHON) hatch_build.py $< $@; \
	else echo "clang not found: BPF tier off (apt-get install clang llvm; make bpf)"; fi

# ruff on the whole tree, stricter rules and mypy on the modules that keep them green
# (widen these lists as modules are cleaned). Seconds, so check runs it first.
LINT_STRICT := schedtop/model.py schedtop/collect/live.py schedtop/collect/fold.py schedtop/collect/kernel_caps.py \
	tests/unit/test_extras_parts.py schedtop/collect/replay.py schedtop/collect/ext_watch.py schedtop/collect/scx_events.py \
	schedtop/once.py schedtop/ui/widgets/header.py schedtop/ui/widgets/status.py schedtop/ui/widgets/latency.py \
	schedtop/ui/screens/queue.py schedtop/ui/screens/scx.py schedtop/ui/screens/sched_ext.py \
	schedtop/ui/history.py schedtop/ui/palette.py schedtop/ui/run.py schedtop/ui/controllers/__init__.py \
	schedtop/ui/controllers/scheduler.py tests/unit/test_scheduler_controller.py \
	schedtop/ui/controllers/steering.py schedtop/ui/screens/steer.py schedtop/ui/screens/changes.py tests/unit/test_steering_session.py \
	hatch_build.py schedtop/bpf/objects.py tests/host/install.py tests/host/test_install.py tests/host/conftest.py \
	schedtop/bpf/libbpf/__init__.py schedtop/bpf/libbpf/lib.py schedtop/bpf/libbpf/bpfobject.py \
	schedtop/bpf/libbpf/rings.py schedtop/bpf/globals.py schedtop/bpf/btf.py schedtop/steer/exec_watch.py \
	schedtop/scx/loader.py schedtop/ui/screens/main.py schedtop/ui/screens/help.py schedtop/kernel_paths.py tests/unit/test_kernel_paths.py \
	schedtop/ui/bpf_actions.py schedtop/scx/supervisor.py schedtop/ui/widgets/cpu_panel.py
LINT_STRICT += schedtop/exporter/__init__.py schedtop/exporter/buckets.py schedtop/exporter/collection.py \
	schedtop/exporter/metrics.py schedtop/exporter/cli.py tests/host/test_exporter.py
LINT_STRICT += schedtop/steer/gamemode.py tests/host/test_gamemode.py
LINT_STRICT += schedtop/collect/frametime.py schedtop/collect/frames_cli.py tests/host/test_frametime.py tests/unit/test_frametime_parse.py
LINT_STRICT += schedtop/export/scx_stats.py schedtop/export/loop_stats.py tests/unit/test_scx_stats.py \
	tests/fixtures/scx_stats/from_rust.py
LINT_STRICT += schedtop/serve/__init__.py schedtop/serve/cli.py schedtop/serve/server.py \
	schedtop/serve/browser.py schedtop/serve/session.py schedtop/ui/readonly.py tests/host/test_serve.py screenshots/make_browser_screenshot.py
LINT_STRICT += schedtop/scx/plans.py tests/unit/test_plan_book.py
LINT_TYPED := $(LINT_STRICT)
lint: venv
	@test -x $(VENV)/bin/ruff -a -x $(VENV)/bin/mypy || $(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/ruff check schedtop tests bench screenshots
	$(VENV)/bin/ruff check --extend-select I,UP,B,E501 $(LINT_STRICT)
	$(VENV)/bin/mypy $(LINT_TYPED)

# The wheel a user installs, in dist/: hatch_build.py compiles the CO-RE objects into it
# (it fails without clang or libbpf >= 1.4 headers; see the README, "Install for yourself").
wheel: venv libbpf
	rm -f dist/schedtop-*.whl
	$(PY) -m pip wheel -q --no-deps -w dist .

# That wheel pipx-installed outside the checkout, run with no clang on PATH: host smoke
# (BPF data in --once --json, the exec hook), then the installed scheduler in one guest boot.
wheel-smoke: wheel kernel
	.ci/wheel-smoke

# The app on the lowest Textual pyproject.toml allows (its own venv): the Pilot tests that
# do not compare SVGs, which need tests/constraints.txt's exact Textual. Not part of check.
TEXTUAL_LOWEST = $(shell $(PYTHON) -c "import re, tomllib; print(next(re.search(r'>=([0-9.]+)', d)[1] \
	for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('textual')))")
check-lowest: bpf
	test -x .venv-lowest/bin/python || $(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/pip install -q -e '.[test]' 'textual==$(TEXTUAL_LOWEST)'
	.venv-lowest/bin/python -c "import textual; print('textual', textual.__version__)"
	.venv-lowest/bin/python -m pytest -q -p no:cacheprovider tests/tui/test_keys.py tests/tui/test_parts.py \
		tests/tui/test_exit_during_poll.py tests/tui/test_scx_ext_key.py tests/tui/test_base_slice_key.py \
		tests/tui/test_frame_during_push.py tests/tui/test_replay_large_ui.py tests/host/test_bpf_ui.py \
		tests/host/test_scx_events_ui.py

test-host: venv bpf
	$(PY) -m pytest -m 'not kernel' tests

# The fuzz suite alone, 20x deeper than in check (tests/fuzz/fuzzing.py: SCHEDTOP_FUZZ=deep).
fuzz: venv
	SCHEDTOP_FUZZ=deep $(PY) -m pytest tests/fuzz --hypothesis-show-statistics

# Every @pytest.mark.kernel test, in ONE boot of the guest (root, checkout + venv visible,
# HOME and the checkout writable as guest-only overlays; see schedtop/lab/guest.py).
test-guest: venv bpf kernel
	$(SCHEDTOP) lab run --timeout 2400 -- $(abspath $(PY)) -m pytest -m kernel -p no:cacheprovider $(abspath tests)

# The smoke set on each of MATRIX_KERNELS, one boot each (results: $(SCHEDTOP_CACHE)/matrix/check.json).
test-matrix: venv bpf kernel
	$(SCHEDTOP) lab matrix --results $(SCHEDTOP_CACHE)/matrix/check.json $(addprefix --kernel ,$(MATRIX_KERNELS))

# Every kernel of the matrix (6.18, sid, 7.3, trixie, bookworm); then `make kernels-table`.
matrix: venv bpf
	$(SCHEDTOP) lab matrix

kernels-table: venv
	$(SCHEDTOP) lab matrix --readme README.md

screenshots: venv
	$(PY) screenshots/make_screenshots.py
	$(PY) screenshots/make_browser_screenshot.py

bench: venv bpf
	@ls bench/*.py

# Compiled sched_ext peers for the guest benchmarks (NOT part of check): the kernel's own
# tools/sched_ext examples from Debian sid's linux-source of the guest's release, cached
# under $(SCHEDTOP_CACHE)/anchors. Their BPF needs clang >= 16 (Debian 12: clang-19).
.PHONY: anchors
anchors: venv kernel
	@command -v clang-19 >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "make anchors: need root to install clang-19" >&2; exit 1; }; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang-19; }
	$(PY) bench/anchor_build.py

clean:
	rm -rf schedtop/bpf/obj build dist .venv-lowest
