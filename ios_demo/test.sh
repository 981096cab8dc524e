#!/usr/bin/env bash
# Build and test the Swift package (every target that builds on Linux; ResflexCoreML compiles to nothing there).
# Usage: ios_demo/test.sh   (from anywhere). Exits non-zero on a build error or a failing test.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v swift >/dev/null 2>&1; then
    export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null 2>&1 || { echo "ios_demo/test.sh: no swift on PATH (nor in /opt/swift/usr/bin)" >&2; exit 1; }
swift --version 2>&1 | head -1
JOBS="${SWIFT_JOBS:-2}"
swift build -j "$JOBS"
# XCTest prints one "Executed N tests" line per test class and a total; keep the output whole (it is short).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test -j "$JOBS" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo "ios_demo swift test summary:"
grep -E "Test Suite '.*' (passed|failed)|Executed [0-9]+ tests|^replayed|^hostile bundles" "$log" | tail -n 24 || true
exit "$status"
