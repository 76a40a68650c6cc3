#!/usr/bin/env bash
# Set up everything the tests need on a bare Debian machine with Python and pip, then run
# ruff, mypy and the whole pytest suite.  Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v editcap >/dev/null 2>&1 || need+=(tshark)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "installing ${need[*]} (Debian packages) ..." >&2
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
python3 -m ruff check lyncpcap tests bench
python3 -m mypy
python3 -m pytest -n 2 -q "$@"
