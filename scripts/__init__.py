"""The project's commands, each run from the repository's root as a module of this package:
`python -m scripts.run_matrix --profile cpu`, `python3 -m scripts.setup_env`, ... (the Makefile's
targets call them so). They import each other and `common` as packages of the root."""
