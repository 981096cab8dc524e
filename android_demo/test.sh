#!/usr/bin/env bash
# Compile the pure-Kotlin modules of android_demo — selector/ and core/, main, test and test-fixture sources — in ONE kotlinc run
# (Debian's kotlinc 1.3.31 takes ~1 min to start and compile) and run their JUnit 4 tests on the JVM. Prints one
# JUnit "OK (N tests)" line per module; exits non-zero if compilation or any test fails.
#   bash android_demo/test.sh        # Debian: apt-get install kotlin junit4 libandroid-json-java
#   KOTLINC=/path/to/kotlinc bash android_demo/test.sh        # another compiler, e.g. current Kotlin
# Environment passed through to the tests: RESFLEX_PORT_OUT (write device_profile_kotlin.json there),
# RESFLEX_PORT_LUT, RESFLEX_PORT_CHECKPOINT_SHA256 (see core/src/test/kotlin/dev/resflex/core/BenchmarkTest.kt).
# The app/ module needs the Android SDK and is not compiled here (see README.md).
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

sources=()
for module in selector core; do
  dirs=("$here/$module/src/main/kotlin" "$here/$module/src/test/kotlin")
  [ -d "$here/$module/src/testFixtures/kotlin" ] && dirs+=("$here/$module/src/testFixtures/kotlin")
  while IFS= read -r f; do sources+=("$f"); done < <(find "${dirs[@]}" -name '*.kt' | sort)
done

start=$(date +%s)
"$kotlinc" -version 2>&1 | tail -n 1
"$kotlinc" -nowarn -cp "$cp" -d "$build" "${sources[@]}"
echo "kotlinc: compiled selector + core, main + test (${#sources[@]} files) in $(( $(date +%s) - start )) s"

run_cp="$build:$here/selector/src/test/resources:$here/core/src/test/resources:$cp:$stdlib"
classes() { (cd "$build" && find "dev/resflex/$1" -maxdepth 1 -name '*Test.class' | sed 's/\.class$//; s#/#.#g' | sort); }
status=0
for module in selector core; do
  echo "== $module"
  # shellcheck disable=SC2046
  java -cp "$run_cp" org.junit.runner.JUnitCore $(classes "$module") || status=1
done
exit $status
