#!/usr/bin/env bash
# `make test-latest` (not in CI): the newest release of every dependency — upper bounds in pyproject.toml lifted —
# in a separate .venv-latest, then the test suite. A breaking aiortc/aioice/av release shows up here before a user
# meets it; when it passes, raise the bound in pyproject.toml and run make lock. Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-latest
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$PY" - "$reqs" <<'PYEOF'
import re, sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = p["dependencies"] + p.get("optional-dependencies", {}).get("test", [])
# keep the name, extras and lower bounds; drop every upper bound (<, <=, ~=, ==) so the newest release is taken
out = []
for d in deps:
    name, _, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+(\[[^\]]*\])?)\s*(.*)$", d).groups()
    keep = [c.strip() for c in spec.split(";")[0].split(",") if c.strip().startswith(">")]
    out.append(name + ",".join(keep))
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PYEOF
echo "test-latest: installing the newest releases into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -r "$reqs"
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" -m pip check || true
"$VENV/bin/vlh" --version
exec "$VENV/bin/python" -m pytest -q -ra "$@"
