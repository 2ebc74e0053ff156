#!/usr/bin/env bash
# Install what the tests need and run the whole suite (README's second command; .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# SIPp (Debian's sip-tester) drives the SIP interop tests (tests/interop/sipp.py). Installed
# here when missing; a failed install stops the run: those tests never skip for want of it.
if ! command -v sipp >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "sipp not found: installing Debian's sip-tester" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sip-tester
    command -v sipp >/dev/null 2>&1 || { echo "sipp still missing after installing sip-tester" >&2; exit 1; }
fi

# The PostgreSQL store tests run against this server; set GATEWAY_TEST_POSTGRES= (empty) to
# skip them where no server exists. When set, an unreachable server fails those tests.
export GATEWAY_TEST_POSTGRES="${GATEWAY_TEST_POSTGRES-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -q "$@"
