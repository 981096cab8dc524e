#!/usr/bin/env bash
# Compile the pure-Kotlin selector with its JUnit tests (one kotlinc run) and run them on the JVM: every golden
# case of tests/golden/selector_golden.json is replayed as its own test. Prints JUnit's "OK (N tests)".
#   bash android_demo/selector/test.sh          # Debian: apt-get install kotlin junit4 libandroid-json-java
#   KOTLINC=/path/to/kotlinc bash android_demo/selector/test.sh     # another compiler, e.g. current Kotlin
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kotlinc="${KOTLINC:-kotlinc}"
command -v "$kotlinc" >/dev/null || { echo "test.sh: $kotlinc not found (apt-get install kotlin)" >&2; exit 1; }
command -v java >/dev/null || { echo "test.sh: java not found" >&2; exit 1; }
jars=(/usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar /usr/share/java/com.android.json.jar)
for jar in "${jars[@]}"; do
  [ -f "$jar" ] || { echo "test.sh: $jar missing (apt-get install junit4 libandroid-json-java)" >&2; exit 1; }
done
stdlib="$(cd "$(dirname "$(readlink -f "$(command -v "$kotlinc")")")/../lib" && pwd)/kotlin-stdlib.jar"
[ -f "$stdlib" ] || { echo "test.sh: $stdlib missing (kotlin-stdlib beside $kotlinc)" >&2; exit 1; }
cp="$(IFS=:; echo "${jars[*]}")"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT

start=$(date +%s)
"$kotlinc" -version 2>&1 | tail -n 1
"$kotlinc" -nowarn -cp "$cp" -d "$build" \
  "$here"/src/main/kotlin/dev/resflex/selector/*.kt "$here"/src/test/kotlin/dev/resflex/selector/*.kt
echo "kotlinc: compiled main + test in $(( $(date +%s) - start )) s"
java -cp "$build:$here/src/test/resources:$cp:$stdlib" org.junit.runner.JUnitCore \
  dev.resflex.selector.GoldenTest dev.resflex.selector.SelectorTest
