# Quick start:  make cpu   (set-up, real data, every notebook on the cpu profile, README tables)
#               make test  (set-up, real data, the test suite)
PY ?= python3
TOOLS = $(shell $(PY) scripts/envspec.py python tools)
ENVS ?=
RUN_ARGS ?=

.PHONY: setup data cpu full smoke tables test
setup:
	$(PY) scripts/setup_env.py $(ENVS)

data: setup
	$(TOOLS) scripts/fetch_data.py

cpu: data
	$(TOOLS) scripts/run_matrix.py --profile cpu $(RUN_ARGS); status=$$?; \
	$(TOOLS) scripts/make_tables.py && exit $$status

full: data
	$(TOOLS) scripts/run_matrix.py --profile full $(RUN_ARGS); status=$$?; \
	$(TOOLS) scripts/make_tables.py && exit $$status

smoke: setup
	$(TOOLS) scripts/run_matrix.py --profile smoke --out $${TMPDIR:-/tmp}/rosetta-smoke --force $(RUN_ARGS)

tables:
	$(TOOLS) scripts/make_tables.py

test: data
	$(TOOLS) -m pytest tests $(PYTEST_ARGS)
