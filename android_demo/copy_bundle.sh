#!/usr/bin/env bash
# Copy a `resflex convert` bundle into the Android app's assets: manifest.json, lut.json, the optional
# selector_policy.json and the artifacts Android runs (executorch/, tflite/). Core ML and ONNX artifacts stay out
# of the APK; the app opens the bundle with backends {executorch, tflite}, so their absence is not an error.
#   bash android_demo/copy_bundle.sh BUNDLE_DIR
set -euo pipefail
src="${1:?usage: copy_bundle.sh BUNDLE_DIR (the folder resflex convert --out wrote)}"
dest="$(cd "$(dirname "$0")" && pwd)/app/src/main/assets/bundle"
for f in manifest.json lut.json; do
  [ -f "$src/$f" ] || { echo "copy_bundle.sh: $src/$f not found: not a resflex bundle" >&2; exit 1; }
done
mkdir -p "$dest"
find "$dest" -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
cp "$src/manifest.json" "$src/lut.json" "$dest/"
if [ -f "$src/selector_policy.json" ]; then cp "$src/selector_policy.json" "$dest/"; fi
copied=0
for d in executorch tflite; do
  if [ -d "$src/$d" ]; then cp -R "$src/$d" "$dest/"; copied=1; fi
done
[ "$copied" = 1 ] || echo "copy_bundle.sh: warning: $src has neither executorch/ nor tflite/ artifacts" >&2
echo "copied $src to $dest:"
(cd "$dest" && find . -type f ! -name README.md ! -name .gitignore | sort)
