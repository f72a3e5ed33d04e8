# vlh — two commands do everything on a fresh machine: `make demo` and `make test`.
.PHONY: setup demo test bench clean
VENV := .venv
VLH := $(VENV)/bin/vlh

setup:
	@bash scripts/setup.sh

demo: setup
	$(VLH) demo

test: setup
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/analyze_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
