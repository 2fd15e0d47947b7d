#!/usr/bin/env bash
# Set up (see setup_env.sh) and run the whole test suite under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh testing
. .venv/bin/activate
ruff check src training tests benchmarks examples scripts
python -m pytest -p no:cacheprovider "$@"
