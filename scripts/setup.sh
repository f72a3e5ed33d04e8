#!/usr/bin/env bash
# Installs what vlh needs on a fresh Debian machine: system packages (apt) and a .venv with the project.
# Idempotent and fast when everything is already there. Not root and something missing: prints the command, exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS="espeak-ng libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins chromium flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts alsa-utils"
missing=()
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=requirements-lock.txt
# The lock pins what pyproject.toml asks for; if pyproject changed since, the lock no longer says what to install.
locked=$(sed -n 's/^# pyproject-sha256: //p' "$LOCK" 2>/dev/null | head -1)
if [ "$locked" != "$(sha256sum pyproject.toml | cut -d' ' -f1)" ]; then
  echo "setup: pyproject.toml changed since $LOCK was made: run make lock" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$VENV/.installed" ] || [ "$LOCK" -nt "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
  echo "setup: installing the locked dependencies ($LOCK, hashes checked) and vlh into $VENV"
  "$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r "$LOCK"
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  "$VENV/bin/python" -m pip check
  touch "$VENV/.installed"
fi
