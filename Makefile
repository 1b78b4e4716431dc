# AiKore: `make run` starts the whole stack, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
# The venv is made from Debian's Python where there is one (the Docker image's too). Started as
# root, AiKore runs as two unprivileged users (aikore_site/privileges.py) that must be able to run
# it: a Python under /root (pyenv's, say) is not theirs. A venv made from another Python is rebuilt.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test venv venv-dev venv-python system-deps system-deps-test frontend lint bench clean-data

venv-python:
	@home="$$(dirname "$$(realpath "$$(command -v $(PYTHON))")")"; \
	if [ -f $(VENV)/pyvenv.cfg ] && ! grep -qx "home = $$home" $(VENV)/pyvenv.cfg; then \
		echo "$(VENV) was made from another Python than $(PYTHON): making it again"; rm -rf $(VENV); fi

$(VENV)/.req-run: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.req-dev: requirements.txt requirements-dev.txt $(VENV)/.req-run
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: venv-python $(VENV)/.req-run
venv-dev: venv-python $(VENV)/.req-dev

system-deps:
	scripts/system-deps.sh run

system-deps-test:
	scripts/system-deps.sh test

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend: node_modules/.installed
	if [ -f scripts/build-frontend.sh ]; then scripts/build-frontend.sh; fi

run: system-deps venv frontend
	docker/entry.sh

test: system-deps-test venv-dev frontend
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv-dev
	$(PY) -m ruff check .

bench: venv-dev
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
