# Sluice developer commands. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: venv test unit e2e e2e-kind lint format crds chart-crds deploy run demo clean bench lock image image-size

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

## Debian packages that tests run for real (Prometheus, promtool, lua5.1 for Argo CD's Lua);
## installed when missing.
.PHONY: system-deps
system-deps:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "prometheus is not installed: run 'sudo make system-deps'" >&2; exit 1; \
	  fi; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	}
	@command -v lua5.1 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "lua5.1 is not installed: run 'sudo make system-deps'" >&2; exit 1; \
	  fi; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lua5.1; \
	}
	@# The dashboard test drives headless Chromium; the live view runs in tmux; TLS tests
	@# make their certificates with openssl.
	@command -v chromium >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 && \
	  command -v openssl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "chromium, tmux or openssl missing: run 'sudo make system-deps'" >&2; exit 1; \
	  fi; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    chromium tmux openssl; \
	}

## The whole suite: unit, property and (with SLUICE_E2E_KUBECONFIG) e2e tests.
test: venv
	$(BIN)/pytest
test: system-deps

unit: venv
	$(BIN)/pytest tests/unit

e2e: venv
	$(BIN)/pytest tests/e2e

## The same e2e suite on a kind cluster with the image and the chart installed (needs
## docker and kind; CI runs it). The cluster is deleted at the end, pass or fail.
e2e-kind: venv
	BIN=$(BIN) deploy/e2e-kind.sh

lint: venv
	$(BIN)/ruff check operator tests benchmarks deploy
	$(BIN)/ruff format --check operator tests benchmarks deploy
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format operator tests benchmarks deploy
	$(BIN)/ruff check --fix operator tests benchmarks deploy

## Regenerate crds/ from the pydantic models, and the chart's copy (tests fail on drift).
crds: venv
	$(BIN)/python -m sluice.api.crd crds
	$(MAKE) deploy

chart-crds:
	rm -f charts/sluice/crds/*.yaml
	cp crds/*.yaml charts/sluice/crds/

## Generated from the chart: deploy/install.yaml and the Argo CD ConfigMap (drift-tested).
deploy: venv chart-crds
	$(BIN)/python deploy/render.py install > deploy/install.yaml
	$(BIN)/python deploy/render.py argocd > charts/sluice/argocd/argocd-cm.yaml

## The operator against the current kubeconfig (installs the CRDs first).
run: venv
	kubectl apply -f crds/
	$(BIN)/sluice run

## The main job without a cluster: two shipped Rollouts through the operator's own engine
## and analysis on an in-memory cluster, a simulated clock and scenario metrics. A healthy
## canary is promoted 5 -> 10 -> 25 -> 50 -> 100 %; one whose error rate climbs to 8 % is
## rolled back (exit 1, expected). Timelines on the terminal, charts in out/.
DEMO_SPEED ?= 300
demo: venv
	@mkdir -p out
	$(BIN)/sluice simulate examples/simulate/healthy.yaml \
	  --scenario examples/simulate/healthy-scenario.yaml --speed $(DEMO_SPEED) --plot out/healthy.png
	$(BIN)/sluice simulate examples/simulate/errors.yaml \
	  --scenario examples/simulate/errors-scenario.yaml --speed $(DEMO_SPEED) --plot out/errors.png \
	  || test $$? -eq 1

bench: venv
	$(BIN)/python benchmarks/engine_decisions.py

## The operator's runtime set, pinned: a fresh venv with Sluice alone, frozen.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q .
	{ echo '# The operator runtime set, pinned (Python 3.11): regenerate with `make lock`.'; \
	  echo '# The image installs exactly these (pip --no-deps); no numpy, matplotlib or rich.'; \
	  .lock-venv/bin/pip freeze --exclude sluice; } > requirements.lock
	rm -rf .lock-venv

## The image (needs Docker) and the size of its Python dependencies (no Docker needed).
IMAGE ?= sluice:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	docker build -t $(IMAGE) --build-arg REVISION=$$(git rev-parse HEAD) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .

image-size: venv
	$(BIN)/python benchmarks/image_size.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
