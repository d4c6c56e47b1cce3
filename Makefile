# Entry points for developers and CI (.ci/run runs `make test`).
#
# Test runs that need a base image go through scripts/with-image.sh, which
# checks the daemon and, on machines that cannot pull alpine:3.19.1, serves
# an offline stand-in image from a loopback registry. scripts/ holds what
# orchestrates runs (sharing scripts/lib.sh); fixtures/ only recipes and data
# (the stand-in's Dockerfile, the registry's config, the seed files).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

WITH_IMAGE := scripts/with-image.sh
CANARY := scripts/canary.sh
# The suite's bait (what it makes outside the harness on purpose, see scripts/bait.sh):
# every target that runs the suite depends on bait-sweep, which first removes the bait a
# killed run left. The canary's owner is this make process ($(shell) runs as its child),
# so its canary counts as live exactly as long as the target runs.
BAIT := scripts/bait.sh
export DH_BAIT_PID := $(shell echo $$PPID)
PODMAN := scripts/podman.sh
# Steps of `make test`, in order; append new ones here. `leftovers` always
# runs last, even after a failed step. Each step's wall time is printed after
# it, and a table of all of them with the total at the end.
TEST_STEPS := lint unit e2e audit e2e-concurrent e2e-cold doctest e2e-shared e2e-remote e2e-shards e2e-ownership e2e-build e2e-compose e2e-registry e2e-daemons e2e-tls e2e-ssh e2e-faults podman-smoke chaos

# Slow or special e2e test binaries (builds, compose, TLS, namespaces, chaos, faults):
# each runs in a step of its own, and is left out of every step that re-runs the suite
# (e2e, audit, e2e-concurrent, e2e-cold, e2e-shared, e2e-remote, e2e-shards,
# podman-smoke, and e2e-podman through e2e). Names are nextest binary names: the
# file names under e2e-tests/tests/ without .rs, space-separated, e.g.
# `SPECIAL_BINARIES := compose tls`. Empty: nothing is left out.
#
# To give binaries such a step:
#   1. add their names to SPECIAL_BINARIES;
#   2. add a target that runs them with `special_step` (BINARIES[,NEXTEST ARGS[,WRAPPER]]:
#      -j8 unless given; WRAPPER, a command that runs nextest, such as the events ledger;
#      nothing is left out there):
#        # What it proves, in one line.
#        e2e-compose: deps check-daemon bait-sweep
#        	$(call special_step,compose)
#   3. append the target to TEST_STEPS and .PHONY, and add its row to the README's table.
# Recipes that run the suite pass $(SUITE_FILTER_ARGS), or $(call suite_filter,EXPR) for a
# selection; scripts get the filterset as DH_SUITE_FILTER (see dh_suite_filter in
# scripts/lib.sh). A special step that runs a script gives it `DH_SUITE_FILTER=`.
SPECIAL_BINARIES := ownership build compose registry daemons chaos faults hostile
empty :=
space := $(empty) $(empty)
# $(call binaries,compose tls) is the filterset 'binary(compose) | binary(tls)'.
binaries = $(subst $(space), | ,$(patsubst %,binary(%),$(strip $(1))))
# 'not (binary(compose) | binary(tls))', or nothing while the list is empty.
SUITE_FILTER := $(if $(strip $(SPECIAL_BINARIES)),not ($(call binaries,$(SPECIAL_BINARIES))))
export DH_SUITE_FILTER := $(SUITE_FILTER)
# -E arguments for a run of EXPR (a nextest filterset; the whole suite without one), the
# special binaries left out. One -E: nextest runs the union of several.
suite_filter = $(if $(strip $(1)),-E '$(if $(SUITE_FILTER),($(strip $(1))) & ($(SUITE_FILTER)),$(strip $(1)))',$(if $(SUITE_FILTER),-E '$(SUITE_FILTER)'))
SUITE_FILTER_ARGS := $(call suite_filter)
# The recipe of a step of special binaries: $(call special_step,BINARIES[,NEXTEST ARGS[,WRAPPER]]).
special_step = @rc=0; $(WITH_IMAGE) $(3) cargo nextest run -p e2e-tests $(or $(2),-j8) -E '$(call binaries,$(1))' || rc=$$?; $(save_junit); exit $$rc

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The ci nextest profile (NEXTEST_PROFILE=ci, set by .ci/run) writes its JUnit
# report to one fixed path; keep one per step so e2e does not overwrite unit.
JUNIT_DIR := target/nextest/ci
save_junit = if [[ -f $(JUNIT_DIR)/junit.xml ]]; then mv $(JUNIT_DIR)/junit.xml $(JUNIT_DIR)/junit-$(or $(JUNIT_STEP),$@).xml; fi
APT_PACKAGES := busybox-static docker-compose docker-registry socat util-linux apache2-utils openssh-server openssl

.PHONY: cycles test deps check-daemon bait-sweep unit e2e audit e2e-concurrent e2e-cold doctest e2e-shared e2e-remote e2e-shards e2e-ownership e2e-build e2e-compose e2e-podman podman-smoke deps-podman e2e-registry e2e-daemons e2e-tls e2e-ssh e2e-faults chaos leftovers fmt lint status reap clean bench

test:
	@steps=($(TEST_STEPS) leftovers); failed=(); secs=(); results=(); \
	for step in "$${steps[@]}"; do \
	  start=$$SECONDS; result=passed; \
	  $(MAKE) --no-print-directory "$$step" || { result=FAILED; failed+=("$$step"); }; \
	  secs+=($$((SECONDS - start))); results+=("$$result"); \
	  echo "make test: $$step $${secs[-1]} s$$([[ $$result == passed ]] || echo ", $$result")"; \
	done; \
	printf 'make test: %-18s %8s  %s\n' step time result; \
	for i in "$${!steps[@]}"; do \
	  printf 'make test: %-18s %6d s  %s\n' "$${steps[i]}" "$${secs[i]}" "$${results[i]}"; \
	done; \
	printf 'make test: %-18s %6d s  %s\n' total "$$SECONDS" \
	  "$$(if (( $${#failed[@]} )); then echo "$${#failed[@]} failed"; else echo passed; fi)"; \
	if (( $${#failed[@]} )); then echo "make test: failed: $${failed[*]}" >&2; exit 1; fi

# Installs only what is missing, so a prepared machine needs no network.
deps:
	@missing=(); \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$$pkg"); \
	done; \
	if (( $${#missing[@]} )); then \
	  $(SUDO) apt-get update; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y "$${missing[@]}"; \
	fi
	@cargo nextest --version >/dev/null 2>&1 || cargo install cargo-nextest --locked

check-daemon:
	@scripts/check-daemon.sh

# Removes the suite's stale bait and the chaos driver's stale canaries (their owner is gone,
# or they are another host's and older than 10 minutes), never a live run's: the first step
# of every target that runs the suite.
bait-sweep: check-daemon
	@$(BAIT) sweep

# The library's tests and the CLI's (package docker-harness-cli).
unit: deps
	rc=0; cargo nextest run -p docker-harness -p docker-harness-cli || rc=$$?; $(save_junit); exit $$rc

# The canary is removed even when the suite fails, and its check still runs
# then: a failing suite that also deleted foreign resources should say so.
e2e: deps check-daemon bait-sweep
	$(CANARY) create
	@rc=0; \
	$(WITH_IMAGE) cargo nextest run -p e2e-tests -j8 $(SUITE_FILTER_ARGS) || rc=$$?; \
	$(save_junit); \
	$(CANARY) check || { (( rc )) || rc=1; }; \
	$(CANARY) remove; \
	exit $$rc

# The suite under an independent ledger of docker events: every container, network and
# volume a session created was destroyed, and the numbers match what the tests declared.
audit: deps check-daemon bait-sweep
	cargo build -q -p e2e-tests --bins
	rm -rf target/docker-harness/ledger
	$(WITH_IMAGE) target/debug/ledger --state-dir target/docker-harness/ledger -- cargo nextest run -p e2e-tests -j8 $(SUITE_FILTER_ARGS)

# Two nextest runs of the core of the suite (DH_CORE) at once against the same daemon, as two sessions.
e2e-concurrent: deps check-daemon bait-sweep
	$(WITH_IMAGE) scripts/e2e-concurrent.sh

# The core of the suite (DH_CORE) from a cold image cache, then a warm one: exactly one pull, then none.
e2e-cold: deps check-daemon bait-sweep
	$(WITH_IMAGE) scripts/e2e-cold.sh

# The core of the suite (DH_CORE in scripts/lib.sh) against a daemon reached over TCP, as a remote one is: a socat proxy on a free
# loopback port stands in for the remote engine, stopped by its PID when the target ends.
# With DOCKER_HOST=tcp://… already set, that daemon is used instead, as it is.
e2e-remote: deps check-daemon bait-sweep
	@rc=0; scripts/e2e-remote.sh bash -c 'source scripts/lib.sh && dh_suite_filter "$$DH_CORE" && exec cargo nextest run -p e2e-tests -j8 "$${DH_FILTER_ARGS[@]}"' || rc=$$?; $(save_junit); exit $$rc

# The suite as two CI shards (--partition count:1/2 and count:2/2) at once against the
# same daemon: two sessions, both pass, nothing of either is left.
e2e-shards: deps check-daemon bait-sweep
	$(WITH_IMAGE) scripts/e2e-shards.sh

# One session-shared container for 17 tests under -j8: created exactly once (counted from
# docker events), kept through every test's teardown, removed once the session is over.
# Its session's pre-test check also removes the shared containers earlier steps' sessions
# left (their runners are gone), so `leftovers` finds none.
e2e-shared: deps check-daemon bait-sweep
	$(WITH_IMAGE) scripts/shared-count.sh

# The e2e suite against Podman's Docker-compatible API instead of Docker, set up from
# nothing: Debian's podman, `podman system service` on a unix socket under target/podman/
# (storage, networks and events there too) and DOCKER_HOST pointing at it. It is the `e2e`
# recipe itself (canary included), run inside that environment; the service is stopped by
# its PID when the target ends. What Podman does differently is in the README's "Podman".
e2e-podman: deps-podman
	@$(PODMAN) run $(MAKE) --no-print-directory e2e JUNIT_STEP=$@

# Ownership on every host: checks from another PID namespace (unshare, util-linux) and from a
# process with an empty /proc, leftovers that go by expiry, SIGTERM mid-creation, adoption
# after a SIGKILL. Its own step: it waits out short expiries, and it is no Podman matter.
e2e-ownership: deps check-daemon bait-sweep
	$(call special_step,ownership)

# Images that tests build: eight tests get one session build (docker events: one tag), a
# test's build goes with its test, failed, cached, lent and killed builds leave nothing; the
# ledger balances images too, and no new dangling image or build container is left.
e2e-build: deps check-daemon bait-sweep
	$(WITH_IMAGE) scripts/e2e-build.sh

# Compose files (Debian's docker-compose 1.29): eight parallel tests bring one file up under
# the same service names, a test that panics and one SIGKILLed mid-`up` leave nothing. Under
# the events ledger, since `make audit` leaves special binaries out: what compose created is
# counted against what each test declared, and all of it destroyed.
e2e-compose: deps check-daemon bait-sweep
	cargo build -q -p e2e-tests --bins
	rm -rf target/docker-harness/ledger-compose
	$(call special_step,compose,-j8,target/debug/ledger --state-dir target/docker-harness/ledger-compose --)

# A few binaries of the suite on Podman, so `make test` keeps the support from rotting.
PODMAN_SMOKE := binary(isolation) | binary(cleanup) | binary(naming)
podman-smoke: deps-podman
	@rc=0; $(PODMAN) run $(WITH_IMAGE) cargo nextest run -p e2e-tests -j8 $(call suite_filter,$(PODMAN_SMOKE)) || rc=$$?; \
	$(save_junit); exit $$rc

deps-podman:
	@$(MAKE) --no-print-directory deps APT_PACKAGES='$(APT_PACKAGES) podman'

# Images a spec names, resolved like the session image: pulled once for 8 parallel tests
# through the mirror (docker events); private registries (htpasswd, bcrypt) pulled from with
# auths entries, a credential helper, DOCKER_AUTH_CONFIG; a refused login as one error
# without the secret. Each test starts a docker-registry of its own on a free loopback port.
e2e-registry: deps check-daemon bait-sweep
	$(call special_step,registry)

# Reaching the daemon as the docker CLI does: over TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH;
# a wrong CA, an untrusted client certificate, a missing key), through the current docker
# context, over ssh (dial-stdio, no ssh process left, a refused key). Each test starts its
# own socat TLS proxy or OpenSSH server on loopback in front of the local daemon.
e2e-daemons: deps check-daemon bait-sweep
	$(call special_step,daemons)

# The binaries of the suite that run through each other way to the daemon.
DAEMON_SMOKE := binary(isolation) | binary(cleanup) | binary(naming) | binary(ports)

# The smoke subset against the daemon behind a TLS proxy that verifies client certificates
# (scripts/e2e-tls.sh: socat, certificates made for the run), as a --tlsverify daemon.
e2e-tls: deps check-daemon bait-sweep
	@rc=0; scripts/e2e-tls.sh cargo nextest run -p e2e-tests -j8 $(call suite_filter,$(DAEMON_SMOKE)) || rc=$$?; \
	$(save_junit); exit $$rc

# The smoke subset against the daemon over ssh (scripts/e2e-ssh.sh: an OpenSSH server of the
# run's own on loopback, key authentication, its account running docker system dial-stdio).
e2e-ssh: deps check-daemon bait-sweep
	@rc=0; scripts/e2e-ssh.sh cargo nextest run -p e2e-tests -j8 $(call suite_filter,$(DAEMON_SMOKE)) || rc=$$?; \
	$(save_junit); exit $$rc

# Random kills at scale (e2e-tests/src/bin/chaos/): each trial runs a random sample of the
# suite under nextest -j8 and kills tests at random moments (a slow-timeout profile drawn for
# it, SIGTERM/SIGKILL to tests, nextest and the watcher, or a panic, exit or abort in the
# chaos test), then asks the daemon what is left after 2 s and 10 s. Anything left after
# 10 s, touched canaries, unlabelled dh- names or processes left fail it. `make chaos` is
# the short run in `make test`; `make chaos TRIALS=200` the full one; each trial prints its
# seed, and `CHAOS_SEED=SEED make chaos TRIALS=1` replays it.
TRIALS := 3
# At most this many tests a trial: keeps the short run in `make test` near a minute and a half.
CHAOS_MAX_TESTS := 6
# Tests never sampled (substrings of their names). CHAOS_EXCLUDE: binaries never sampled
# besides the special ones: their tests start children in sessions of their own with the
# watcher off, or make orphans on purpose, so a kill leaves what only the next session's
# check removes, by design.
CHAOS_SKIP :=
CHAOS_EXCLUDE := image processes sweep watcher
chaos: deps check-daemon bait-sweep
	$(CANARY) create
	@rc=0; \
	$(WITH_IMAGE) cargo run -q -p e2e-tests --bin chaos -- --trials $(TRIALS) --max-tests $(CHAOS_MAX_TESTS) \
	  --exclude-binaries '$(SPECIAL_BINARIES) $(CHAOS_EXCLUDE)' $(patsubst %,--skip %,$(CHAOS_SKIP)) || rc=$$?; \
	$(CANARY) check || { (( rc )) || rc=1; }; \
	$(CANARY) remove; \
	exit $$rc

doctest: deps check-daemon
	$(WITH_IMAGE) cargo test --doc -p docker-harness

# What the harness costs next to raw bollard calls, against the real daemon: a table on
# stdout and every figure in target/bench/latest.json. Figures, not a test: not in
# TEST_STEPS, and a missed target does not fail it. Release build, so it neither waits on
# nor invalidates the debug builds of a test run going on at the same time.
bench: deps check-daemon
	$(WITH_IMAGE) cargo run --release -p docker-harness-bench

# Fails on anything a run left: whatever carries the harness's docker-harness.managed label,
# anything named dh-* without it (the harness's names, so either bait or what a program under
# test made), and the e2e suite's bait (label docker-harness-e2e.bait) under any name.
# A daemon that misbehaves (through src/bin/fault-proxy.rs) and hostile surroundings (state
# directories, TMPDIR, garbage settings, two users): outcomes, not timings.
e2e-faults: deps check-daemon bait-sweep
	$(call special_step,faults hostile)

leftovers: check-daemon
	@cols='{{.Label "docker-harness.managed"}}\t{{.Label "docker-harness-e2e.bait"}}'; \
	all=$$(docker ps -a --format "container\t{{.ID}}\t{{.Names}} ({{.Status}})\t$$cols"); \
	all+=$$'\n'$$(docker network ls --format "network\t{{.ID}}\t{{.Name}}\t$$cols"); \
	all+=$$'\n'$$(docker volume ls --format "volume\t\t{{.Name}}\t$$cols"); \
	all+=$$'\n'$$(images_with() { docker image ls -q --filter "label=$$1" | tr '\n' ' '; }; \
	  docker image ls --format 'image\t{{.ID}}\t{{.Repository}}:{{.Tag}}' | \
	  awk -F'\t' -v m="$$(images_with docker-harness.managed)" -v b="$$(images_with docker-harness-e2e.bait)" \
	    'BEGIN { n = split(m, a, " "); for (i = 1; i <= n; i++) M[a[i]] = 1; n = split(b, c, " "); for (i = 1; i <= n; i++) B[c[i]] = 1 } \
	     { print $$0 "\t" ($$2 in M ? "true" : "") "\t" ($$2 in B ? "bait" : "") }'); \
	report() { awk -F'\t' -v want="$$1" '$$1 != "" { \
	    what = $$4 != "" ? "managed" : $$3 ~ /^dh-/ ? "unmanaged" : $$5 != "" ? "bait" : ""; \
	    if (what == want) print "  " $$1 ($$2 == "" ? "" : " " $$2) " " $$3 }' <<<"$$all"; }; \
	found=0; \
	for what in managed unmanaged bait; do \
	  list=$$(report "$$what"); [[ -n $$list ]] || continue; found=1; \
	  case $$what in \
	  managed) echo "leftovers: resources labelled docker-harness.managed are still present:" >&2 ;; \
	  unmanaged) echo "leftovers: resources named dh-* without the docker-harness.managed label are still present:" >&2 ;; \
	  bait) echo "leftovers: the e2e suite's bait (label docker-harness-e2e.bait) is still present:" >&2 ;; \
	  esac; \
	  printf '%s\n' "$$list" >&2; \
	done; \
	sessions=$${DOCKER_HARNESS_STATE_DIR:-$${TMPDIR:-/tmp}/docker-harness-$$(id -u)}/sessions; \
	old=$$(find "$$sessions" -mindepth 1 -maxdepth 1 -type d -mtime +0 2>/dev/null || true); \
	if [[ -n $$old ]]; then \
	  found=1; \
	  echo "leftovers: session state older than a day, which the pre-test check removes once its session is over:" >&2; \
	  sed 's/^/  /' <<<"$$old" >&2; \
	fi; \
	if (( found )); then \
	  echo "leftovers: the suite's stale bait goes with '$(BAIT) sweep'; remove anything else by its name" >&2; \
	  exit 1; \
	fi; \
	echo "leftovers: none"

fmt:
	cargo fmt --all

# The library's layers (no import cycle, every import points down: scripts/check-layers.py),
# formatting, clippy on every target, and the docs, all with warnings as errors.
lint:
	python3 scripts/check-layers.py
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p docker-harness

# A second witness that the library's modules have no import cycle: cargo-modules' graph
# (rust-analyzer's name resolution). Slow to install, so not in `make test`; 0.27 is the
# last release that builds with this toolchain.
CARGO_MODULES_VERSION := 0.27.0
cycles:
	@cargo modules --version >/dev/null 2>&1 || cargo install cargo-modules --version $(CARGO_MODULES_VERSION) --locked
	cargo modules dependencies --lib -p docker-harness --no-fns --no-types --no-traits --no-externs --no-sysroot --no-owns \
	  | python3 scripts/check-layers.py --dot

# The docker-harness CLI (package docker-harness-cli): what test runs left, and removing
# it (only ever resources labelled docker-harness.managed).
# `make clean ARGS='--session ID'`, `--kept`, `--all`.
status: check-daemon
	cargo run -q -p docker-harness-cli -- status

reap: check-daemon
	cargo run -q -p docker-harness-cli -- reap

clean: check-daemon
	cargo run -q -p docker-harness-cli -- clean $(or $(ARGS),--all)
