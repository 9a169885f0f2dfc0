# ocppproxy: `make run` to run the daemon, `make test` to run the tests, `make docs` to
# build the documentation in docs/_build/html, `make demo`
# for a demo with two central systems and one station, `make cluster-demo` for three
# instances behind HAProxy sharing a Redis. Everything lives in $(VENV).

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= etc/ocppproxy.yaml

BIN := $(VENV)/bin
# The package is installed, not linked (pip install ., never -e): the twistd plugin
# is then found exactly as users find it. Any edit to these files reinstalls it.
PACKAGE_FILES := setup.cfg pyproject.toml constraints/ci.txt README.rst \
	$(shell find ocppproxy twisted/plugins -name '*.py' 2>/dev/null)
DEPENDENCY_FILES := $(BIN)/python setup.cfg pyproject.toml constraints/ci.txt
INSTALLED := $(VENV)/.installed
EXTRAS := test,apprise

.PHONY: venv run test unit test-oldest container-test plugin-check docs demo cluster-demo bench clean

venv: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# First time, or when the dependencies may have changed: install with everything the
# tests need (the test extra, and the apprise extra whose channel they test), at the
# versions CI tests (constraints/ci.txt). Otherwise only the package itself is
# reinstalled, which is quicker. (A variable: a comma written inside $(if ...) would
# split its arguments.)
# setuptools builds in ./build and keeps files deleted from the source there: start clean.
$(INSTALLED): $(BIN)/python $(PACKAGE_FILES)
	rm -rf build
	$(BIN)/pip install -q -c constraints/ci.txt $(if $(filter $(DEPENDENCY_FILES),$?),'.[$(EXTRAS)]',--no-deps --force-reinstall .)
	rm -rf build
	touch $@

run: $(INSTALLED)
	$(BIN)/twistd -n --pidfile= ocppproxy -c $(CONFIG)

# The installed twistd must list the plugin; without PYTHONPATH, as users run it.
plugin-check: $(INSTALLED)
	@env -u PYTHONPATH $(BIN)/twistd --help | grep -qE '^ +ocppproxy ' \
		|| { echo "error: '$(BIN)/twistd --help' does not list the ocppproxy plugin" >&2; exit 1; }
	@echo "twistd lists the ocppproxy plugin"

test: plugin-check
	$(BIN)/python tests/summary.py

# The unit tier alone (tests/unit: no process, no socket, no wall clock): seconds, for
# every change; make test runs it and the system tier (tests/system).
unit: $(INSTALLED)
	$(BIN)/python tests/summary.py --reactor=asyncio tests.unit

# The Sphinx site of docs/ in docs/_build/html; a warning (a broken reference, a page in
# no table of contents) fails the build. Sphinx comes with the docs extra, installed into
# $(VENV) at CI's versions the first time and whenever the dependencies may have changed.
DOCS_INSTALLED := $(VENV)/.docs-installed
$(DOCS_INSTALLED): $(INSTALLED) setup.cfg constraints/ci.txt
	rm -rf build
	$(BIN)/pip install -q -c constraints/ci.txt '.[docs]'
	rm -rf build
	touch $@

docs: $(DOCS_INSTALLED)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The suite again on the oldest releases setup.cfg allows (constraints/oldest.txt), in
# a venv of its own made anew each time: CI's second step, so the floors are real.
OLDEST := .venv-oldest
test-oldest:
	rm -rf $(OLDEST) build
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install -q -c constraints/oldest.txt '.[$(EXTRAS)]'
	rm -rf build
	$(OLDEST)/bin/python tests/summary.py

# The container image (Containerfile) built and run with podman: CI's third step, not
# part of make test. Where no registry is reachable, tests/container-base.sh builds the
# base image from Debian's packages (root and debootstrap needed).
IMAGE := localhost/ocppproxy:test
container-test: $(INSTALLED)
	tests/container-base.sh
	podman build --quiet --format docker --isolation=chroot --network=host -t $(IMAGE) . >/dev/null
	OCPPPROXY_TEST_IMAGE=$(IMAGE) $(BIN)/python tests/summary.py --reactor=asyncio tests.system.test_container

demo: $(INSTALLED)
	$(BIN)/python demo/run_demo.py

# Needs redis-server and haproxy (Debian packages of those names); stops by itself.
cluster-demo: $(INSTALLED)
	$(BIN)/python demo/run_cluster_demo.py

# Not part of the tests: a few minutes on 127.0.0.1; BENCH_ARGS="--help" lists the knobs.
bench: $(INSTALLED)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(OLDEST) build dist *.egg-info _trial_temp* twisted/plugins/dropin.cache docs/_build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
