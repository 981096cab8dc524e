#!/usr/bin/env bash
# Install resflex with every converter and the test tools, then run the test suite (what CI runs).
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --progress-bar off torch==2.13.0 -e ".[convert,report,test]"
bash scripts/setup-onnx2tf.sh
python -m pytest -q "$@"
