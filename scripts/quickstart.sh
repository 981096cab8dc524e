#!/usr/bin/env bash
# Install resflex and run the main job end to end on the built-in synthetic data (no download, no GPU):
# train a MobileNetV2 at five resolutions → accuracy at nine test resolutions → mobile bundle → its lookup table.
# --keep-going: the short demo training leaves a weak model whose int8 parity may miss the targets; the bundle
# records that and the demo still prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --progress-bar off torch==2.13.0 -e ".[convert,report]"
bash scripts/setup-onnx2tf.sh
resflex train --data synthetic --arch mobilenet_v2 --width 0.35 --method rsnet --resolutions 64,56,48,40,32 \
    --epochs 4 --train-samples 2000 --out runs/demo --overwrite
resflex eval runs/demo/checkpoint.pt --data synthetic --resolutions 64,60,56,52,48,44,40,36,32 --bn interpolate
resflex convert runs/demo/checkpoint.pt --out bundles/demo --backends executorch,coreml,tflite,onnx \
    --precision fp32,int8 --calib-data synthetic --calib-samples 128 --val-samples 300 --overwrite --zip --keep-going
resflex inspect bundles/demo
