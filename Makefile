# vlh — two commands do everything on a fresh machine: `make demo` and `make test`.
.PHONY: setup demo test bench clean lock test-latest
VENV := .venv
VLH := $(VENV)/bin/vlh

setup:
	@bash scripts/setup.sh

demo: setup
	$(VLH) demo

test: setup
	$(VENV)/bin/python -m pytest -q -ra --durations=20 $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/analyze_speed.py

lock:
	@bash scripts/lock.sh

# not in CI: the newest releases (upper bounds lifted) in .venv-latest, then the suite
test-latest:
	@bash scripts/test-latest.sh $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-tools build *.egg-info .pytest_cache
