#!/usr/bin/env bash
# Install what the tests need and run the whole suite (README's second command; .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# The PostgreSQL store tests run against this server; set GATEWAY_TEST_POSTGRES= (empty) to
# skip them where no server exists. When set, an unreachable server fails those tests.
export GATEWAY_TEST_POSTGRES="${GATEWAY_TEST_POSTGRES-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -q "$@"
