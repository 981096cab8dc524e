#!/usr/bin/env bash
# Install resflex and run the main job end to end on the built-in synthetic data (no download, no GPU):
# train a MobileNetV2 at five resolutions → accuracy at nine test resolutions → mobile bundle → host latencies
# into its lookup table → report (plots) → one selector decision → phone simulation of the selector.
# The demo model (12 epochs, ~23 s each on 2 cores) reaches 99.7 % top-1 at 64 px (92.3 % at 32 px), enough for
# every int8 entry to meet the parity targets on 1,000 validation images per resolution (agreement >= 99 %, drop
# <= 1 pt), so convert runs without --keep-going: a miss fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --progress-bar off torch==2.13.0 -e ".[convert,report]"
bash scripts/setup-onnx2tf.sh
resflex train --data synthetic --arch mobilenet_v2 --width 0.35 --method rsnet --resolutions 64,56,48,40,32 \
    --epochs 12 --train-samples 4000 --out runs/demo --overwrite
resflex eval runs/demo/checkpoint.pt --data synthetic --resolutions 64,60,56,52,48,44,40,36,32 --bn auto
resflex convert runs/demo/checkpoint.pt --out bundles/demo --backends executorch,coreml,tflite,onnx \
    --precision fp32,int8 --calib-data synthetic --calib-samples 128 --val-samples 1000 --overwrite --zip
resflex inspect bundles/demo
resflex profile bundles/demo --device host --runtimes executorch,tflite,onnxruntime --threads 1 --runs 30
resflex report bundles/demo --out reports/demo --overwrite
resflex select bundles/demo --battery 0.2 --thermal 2 --budget-ms 0.5
resflex simulate bundles/demo --scenario steady,gaming,low_battery --out sim/demo --overwrite
