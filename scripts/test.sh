#!/usr/bin/env bash
# Install resflex with every converter and the test tools, then run the test suite (what CI runs).
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --progress-bar off torch==2.13.0 -e ".[convert,report,test]"
bash scripts/setup-onnx2tf.sh
# Debian's adb (~10 s) lets the Android profiling test check "no device attached" against the real tool; best effort.
command -v adb >/dev/null || { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && apt-get install -y -qq adb >/dev/null 2>&1; } || echo "adb not installed: its test will be skipped"
python -m pytest -q "$@"
