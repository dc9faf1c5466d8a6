# The two commands: `make run` and `make test`. Each installs what it needs.
VENV      := .venv
PY        := $(VENV)/bin/python
APT_PKGS  := busybox-static runc iptables tini skopeo docker-registry containerd
PYTEST_ARGS ?=

.PHONY: run test deps system-deps lint format bench clean-test

deps: system-deps $(VENV)/.installed
	@# Bytecode even where PYTHONDONTWRITEBYTECODE is set: shims and the CLI start faster.
	@$(PY) -m compileall -q src >/dev/null

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: deps
	@scripts/run-demo

test: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/pytest -p no:cacheprovider -n 2 --dist loadfile tests $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check src tests bench

format:
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: deps
	$(PY) bench/run.py
