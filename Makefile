# homelab-p2p-bridge: the two commands of the quick start, and the pieces they are made of.
#   make demo   bring the system up on the embedded default (local signaling gateway)
#   make test   every test, linter and type check
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help system-deps venv lint test images test-pytest test-unit test-integration test-molecule demo demo-clean lambda-zip bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

system-deps:  ## install the Debian packages the tests and the demo use (needs root)
	scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)  ## create .venv with the project and its test tools

lint: venv  ## ruff, ruff format, mypy, the import direction, yamllint, ansible-lint (production profile)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/yamllint --strict .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --offline -q

# lint beside the image build, then pytest beside molecule: molecule's scenarios mostly wait on
# their containers (apt, pip, systemd), so the two share 2 cores well. Each target's output is
# printed whole when it ends.
test: venv  ## every check and test (CI runs this): lint, pytest and every molecule scenario
	$(MAKE) --jobs=2 --output-sync=target lint images
	$(MAKE) --jobs=2 --output-sync=target test-pytest test-molecule

images:  ## build the systemd images molecule and the demo start from (Debian 12 and 13), once
	scripts/build-systemd-image.sh bookworm trixie

test-pytest: venv  ## the unit, integration and end-to-end tests
	$(BIN)/pytest

test-molecule: venv images  ## every molecule scenario side by side: the site on Debian 12 and 13, the firewalls
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/molecule-all.sh

test-unit: venv  ## unit tests only
	$(BIN)/pytest tests/unit

test-integration: venv  ## integration tests only (real sockets on loopback)
	$(BIN)/pytest tests/integration

demo: venv  ## a homelab in a systemd container, provisioned by site.yml; proves echo, web and ssh over WebRTC
	$(BIN)/python scripts/demo.py up

demo-clean:  ## remove the demo's container, image, agent, keys and credentials; say what is kept
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/demo.py down; else rm -rf .demo; fi

lambda-zip: venv  ## build dist/signaling_lambda.zip (byte-reproducible)
	$(BIN)/python -m signaling_lambda.package --out dist/signaling_lambda.zip

bench: venv  ## run the benchmarks (prints tables and a JSON line each; the bridge's needs root)
	$(BIN)/python -m benchmarks.signaling
	$(BIN)/python -m benchmarks.lambda_cold_start
	$(BIN)/python -m benchmarks.bridge
	$(BIN)/python -m benchmarks.client_agent
	$(BIN)/python -m benchmarks.hostile_gateway
	$(BIN)/python -m benchmarks.hostile_daemon
	$(BIN)/python -m benchmarks.browser_proxy

clean: demo-clean  ## remove the venv, the wheel cache and build output
	rm -rf $(VENV) .cache build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
