# One entry point for developers and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint pytest docs browser bench mutants clean

$(BIN)/qrtracker: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: the tracker on an embedded Redis (with the simulator when QUICKROUTER_API_KEY is unset)
run: $(BIN)/qrtracker
	$(BIN)/qrtracker up

## test: lint, type-check, import contracts, then the whole test suite
test: lint pytest

lint: $(BIN)/qrtracker
	$(BIN)/ruff check tracker workers tests bench
	$(BIN)/ruff format --check tracker workers tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

## docs: the manual (docs/, mkdocs.yml), served on 127.0.0.1:8001 as you edit it
docs: $(BIN)/qrtracker
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

## pytest: the suite on two processes, each test file whole on one (its module's fixtures,
## a cluster say, start once); most tests wait on real processes, so two overlap well
pytest: $(BIN)/qrtracker browser
	$(BIN)/pytest -n 2 --dist loadfile

## browser: the dashboard's tests drive Debian's chromium; installed here where it is missing
## (CI runs as root on Debian), never downloaded by selenium
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	  else \
	    echo "the dashboard's test needs chromium and chromium-driver: apt-get install chromium chromium-driver"; \
	    exit 1; \
	  fi; }

## mutants: remove each guard of the store and the delivery path in turn; its test must fail
mutants: $(BIN)/qrtracker
	$(BIN)/python -m tests.mutants

## bench: every benchmark, each printing its table (see README, Performance)
bench: $(BIN)/qrtracker
	for b in capacity lag polling ceiling api memory isolation delivery records events ui storage; do $(BIN)/python -m bench $$b || exit 1; done

clean:
	rm -rf $(VENV) .qrtracker .pytest_cache .mypy_cache .ruff_cache .site
