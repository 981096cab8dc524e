#!/usr/bin/env bash
# Install resflex with every converter and the test tools, then run the test suite (what CI runs).
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {  # Debian packages, as root; refreshes the package lists once if the first try fails
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

python -m pip install --progress-bar off torch==2.13.0 -e ".[convert,report,test,docs]"
bash scripts/setup-onnx2tf.sh
# Swift (the iOS core): the project's machines carry it in /opt/swift (ios_demo/test.sh puts it on PATH).
# Debian's adb (~10 s) lets the Android profiling test check "no device attached" against the real tool; best effort.
command -v adb >/dev/null || apt_install adb || echo "adb not installed: its test will be skipped"
# The Kotlin port of the selector replays the golden vectors on the JVM (Debian's kotlin, junit4 and Android's
# org.json, ~1-2 min to install). Required, not best effort: without them this fails loudly.
kotlin_debs="kotlin junit4 libandroid-json-java"
if ! command -v kotlinc >/dev/null || [ ! -f /usr/share/java/junit4.jar ] || [ ! -f /usr/share/java/com.android.json.jar ]; then
  apt_install $kotlin_debs || { echo "scripts/test.sh: cannot install $kotlin_debs (needs root and apt-get); install" \
                                     "them to run the Kotlin selector tests" >&2; exit 1; }
fi
# The documentation site (docs/, mkdocs.yml): broken links, anchors or API references fail the build (~15 s).
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet --site-dir "$site" || { rm -rf "$site"; exit 1; }
rm -rf "$site"; echo "mkdocs build --strict: ok"
python -m pytest -q "$@"
# The ports: Kotlin (selector + core, JVM) and Swift (selector + core, `swift test`). Their BenchmarkRunners (fake
# engines) write device_profile.json for the operating points of a real tiny bundle, which Python then imports
# (`resflex profile --import`) and selects from: the three languages agree on the file format.
ports="$(mktemp -d)"
trap 'rm -rf "$ports"' EXIT
python scripts/port_roundtrip.py prepare "$ports" > "$ports/env.sh" 2> "$ports/prepare.log" \
  || { cat "$ports/prepare.log" >&2; exit 1; }
. "$ports/env.sh"
# The shared hostile-bundle table (issue 24): both ports open every case and must agree with Python's verdict.
python tests/adversarial/hostile_bundles.py "$ports/hostile" >/dev/null
export RESFLEX_HOSTILE_DIR="$ports/hostile"
bash android_demo/test.sh
bash ios_demo/test.sh
python scripts/port_roundtrip.py import "$ports"
