#!/usr/bin/env bash
# Install what the tests need and run the whole suite (README's second command; .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Real peers from Debian, installed here when missing; a failed install stops the run: the
# tests that use them never skip for want of them. SIPp (sip-tester) drives the SIP interop
# tests (tests/interop/sipp.py); Kannel (bearerbox + smsbox) plays a carrier; baresip and
# linphone-cli (linphonec) play apps.
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v bearerbox >/dev/null 2>&1 || missing+=(kannel)
command -v baresip >/dev/null 2>&1 || missing+=(baresip)
command -v linphonec >/dev/null 2>&1 || missing+=(linphone-cli)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing Debian packages the tests need: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    for tool in sipp bearerbox smsbox baresip linphonec; do
        command -v "$tool" >/dev/null 2>&1 || { echo "$tool still missing after apt-get" >&2; exit 1; }
    done
fi

# The PostgreSQL store tests run against this server; set GATEWAY_TEST_POSTGRES= (empty) to
# skip them where no server exists. When set, an unreachable server fails those tests.
export GATEWAY_TEST_POSTGRES="${GATEWAY_TEST_POSTGRES-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -q "$@"
