# Quick start:  make cpu   (set-up, real data, every notebook on the cpu profile, README tables and pages)
#               make test  (set-up, real data, the test suite)
# The set-up builds the GPU environments where nvidia-smi lists a GPU; SETUP_ARGS passes options
# to it, e.g. SETUP_ARGS="--device cpu" or SETUP_ARGS="--use-python torch-gpu=/usr/bin/python3".
PY ?= python3
TOOLS = $(shell $(PY) -m scripts.envspec python tools)
ENVS ?=
SETUP_ARGS ?=
RUN_ARGS ?=

.PHONY: setup data cpu full smoke fidelity tables test
setup:
	$(PY) -m scripts.setup_env $(SETUP_ARGS) $(ENVS)

data: setup
	$(TOOLS) -m scripts.fetch_data

cpu full: data
	$(TOOLS) -m scripts.roofline
	$(TOOLS) -m scripts.run_matrix --profile $@ $(RUN_ARGS); status=$$?; \
	$(MAKE) --no-print-directory tables && exit $$status

smoke: setup
	$(TOOLS) -m scripts.run_matrix --profile smoke --out $${TMPDIR:-/tmp}/rosetta-smoke --force $(RUN_ARGS)

# every notebook's Fidelity section (smoke profile): results/fidelity.json, then the README tables
fidelity: data
	$(TOOLS) -m scripts.fidelity $(RUN_ARGS); status=$$?; \
	$(MAKE) --no-print-directory tables && exit $$status

# README tables, plots and the side-by-side pages, from the records in results/
tables:
	$(TOOLS) -m scripts.make_tables
	$(TOOLS) -m scripts.tag_steps --check
	$(TOOLS) -m scripts.side_by_side --screenshot

test: data
	$(TOOLS) -m pytest tests $(PYTEST_ARGS)
