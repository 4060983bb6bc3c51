# The two commands a newcomer runs from a fresh clone: `make demo` and `make test`.
# Each one does all of its set-up: the virtual environment, torch (a pinned CPU wheel) first, then Kefu.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kefu-installed

.PHONY: demo test test-services lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU wheel on local disk; any other version pulls gigabytes of CUDA.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/kefu demo $(ARGS)

# The suite on the embedded defaults (SQLite, in-process bus, fakeredis); with KEFU_TEST_DATABASE_URL and
# KEFU_TEST_REDIS_URL set, the same suite runs against real PostgreSQL and Redis.
test: $(STAMP)
	scripts/ensure-browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache
