# Quick start:  make cpu   (set-up, real data, every notebook on the cpu profile, README tables and pages)
#               make test  (set-up, real data, the test suite)
# The set-up builds the GPU environments where nvidia-smi lists a GPU; SETUP_ARGS passes options
# to it, e.g. SETUP_ARGS="--device cpu" or SETUP_ARGS="--use-python torch-gpu=/usr/bin/python3".
PY ?= python3
TOOLS = $(shell $(PY) scripts/envspec.py python tools)
ENVS ?=
SETUP_ARGS ?=
RUN_ARGS ?=

.PHONY: setup data cpu full smoke fidelity tables test
setup:
	$(PY) scripts/setup_env.py $(SETUP_ARGS) $(ENVS)

data: setup
	$(TOOLS) scripts/fetch_data.py

cpu full: data
	$(TOOLS) scripts/roofline.py
	$(TOOLS) scripts/run_matrix.py --profile $@ $(RUN_ARGS); status=$$?; \
	$(MAKE) --no-print-directory tables && exit $$status

smoke: setup
	$(TOOLS) scripts/run_matrix.py --profile smoke --out $${TMPDIR:-/tmp}/rosetta-smoke --force $(RUN_ARGS)

# every notebook's Fidelity section (smoke profile): results/fidelity.json, then the README tables
fidelity: data
	$(TOOLS) scripts/fidelity.py $(RUN_ARGS); status=$$?; \
	$(MAKE) --no-print-directory tables && exit $$status

# README tables, plots and the side-by-side pages, from the records in results/
tables:
	$(TOOLS) scripts/make_tables.py
	$(TOOLS) scripts/tag_steps.py --check
	$(TOOLS) scripts/side_by_side.py --screenshot

test: data
	$(TOOLS) -m pytest tests $(PYTEST_ARGS)
