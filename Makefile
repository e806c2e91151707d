# fjord developer tasks. Every target creates .venv on first use, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install dev plan lint test bench docs lock clean

# The locked versions first (every dependency pinned, with hashes: the same versions everywhere, CI included),
# then fjord itself, editable. A dependency added to pyproject.toml but not yet locked is still installed by the
# second step; tests/test_install.py fails until `make lock` pins it.
$(BIN)/fjord: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## install: the .venv with fjord (editable), its modules byte-compiled as pip compiles an installed wheel's.
## Byte-compiling here matters where PYTHONDONTWRITEBYTECODE is set (as on the CI machines): Python then
## never caches bytecode itself and would compile fjord's modules again in every process (~20 ms of `fjord plan dev`).
install: $(BIN)/fjord
	$(BIN)/python -m compileall -q components

## dev: install, then plan the embedded default site offline (the Quick start's first command)
dev: install
	$(BIN)/fjord plan dev

plan: install
	$(BIN)/fjord plan

lint: install
	$(BIN)/ruff check components tests bench tools policy setup.py
	$(BIN)/ruff format --check components tests bench tools policy setup.py
	$(BIN)/mypy
	$(BIN)/mypy --strict bench tools policy
	$(BIN)/lint-imports
	$(BIN)/yamllint --strict stacks Pulumi.yaml mkdocs.yml components/fjord/spec/default_site.yaml policy .github .gitlab-ci.yml
	$(BIN)/yamllint --strict playbooks .ansible-lint
	$(BIN)/ansible-lint --profile production --offline playbooks

## test: install, lint, then the whole test suite (the Quick start's second command; CI runs it)
test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/cli_start.py
	$(BIN)/python bench/bmc_status.py

## lock: pin every dependency of pyproject.toml (with the dev tools) and their hashes into requirements.lock
## (uv's resolver; the versions already locked are kept unless pyproject.toml rules them out)
lock: install
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev --generate-hashes -o requirements.lock pyproject.toml

## docs: the documentation site (MkDocs, Material theme) into site/; references generated from the code
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf site $(VENV) .mypy_cache .ruff_cache .pytest_cache
