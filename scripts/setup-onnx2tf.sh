#!/usr/bin/env bash
# Create the virtual environment that resflex's TFLite backend runs onnx2tf (and TensorFlow's TFLite converter) in.
#
#   bash scripts/setup-onnx2tf.sh [VENV_DIR]
#
# VENV_DIR defaults to $RESFLEX_ONNX2TF_VENV, else ~/.cache/resflex/onnx2tf-venv; point RESFLEX_ONNX2TF_VENV at
# the same folder when it is not the default so the converter finds it. onnx2tf 1.29.24 pins numpy 1.26.4,
# tensorflow 2.19.0, onnx 1.19.1, ... which clash with the main environment (ExecuTorch needs numpy >= 2), so it
# gets its own environment. Idempotent: does nothing when the environment is already complete. Needs Python
# 3.10.12 .. 3.12 (TensorFlow 2.19 has no wheels for 3.13); choose one with PYTHON=/path/to/python3.
set -euo pipefail

VENV="${1:-${RESFLEX_ONNX2TF_VENV:-$HOME/.cache/resflex/onnx2tf-venv}}"
PYTHON="${PYTHON:-python3}"

# onnx2tf pins its direct dependencies exactly (tensorflow, tf-keras, onnx, onnxruntime, onnxsim,
# onnx-graphsurgeon, simple-onnx-processing-tools (sng4onnx, ...), ai-edge-litert, psutil, protobuf, h5py, ...);
# the constraints below also fix what those pull in unpinned (keras 3, tensorboard, ...) to the set that was
# installed and tested together (Python 3.11, Linux x86-64). Keep REQUIREMENTS in sync with
# ONNX2TF_REQUIREMENTS in convert/onnx2tf_env.py; bump CONSTRAINTS_VERSION when the constraints change.
REQUIREMENTS=(onnx2tf==1.29.24)
CONSTRAINTS_VERSION=1
CONSTRAINTS="
absl-py==2.5.1 ai-edge-litert==2.1.0 astunparse==1.6.3 backports.strenum==1.2.8 coloredlogs==15.0.1
flatbuffers==25.12.19 gast==0.7.0 google-pasta==0.2.0 grpcio==1.85.1 h5py==3.11.0 humanfriendly==10.0
json2onnx==2.0.3 keras==3.15.1 libclang==18.1.1 Markdown==3.11.3 markdown-it-py==4.3.0 MarkupSafe==3.0.4
mdurl==0.1.2 ml_dtypes==0.5.1 mpmath==1.3.0 namex==0.1.0 numpy==1.26.4 onnx==1.19.1 onnx2json==2.0.4
onnx_graphsurgeon==0.5.8 onnxoptimizer==0.4.2 onnxruntime==1.23.0 onnxsim==0.4.36 opencv-python==4.11.0.86
opt_einsum==3.4.0 optree==0.20.0 protobuf==4.25.5 psutil==5.9.5 requests==2.32.5 rich==15.0.0 sam4onnx==2.0.0
sbi4onnx==1.0.7 scc4onnx==1.0.7 scs4onnx==1.0.18 sde4onnx==1.0.0 sed4onnx==1.0.5
simple_onnx_processing_tools==1.1.32 sio4onnx==1.0.3 sit4onnx==1.0.10 six==1.17.0 sna4onnx==1.0.6
snc4onnx==1.0.14 snd4onnx==1.1.7 sne4onnx==2.0.1 sng4onnx==2.0.1 soa4onnx==1.0.5 soc4onnx==1.0.2 sod4onnx==1.0.0
sog4onnx==1.0.17 sor4onnx==1.0.7 spo4onnx==1.0.5 ssc4onnx==1.0.8 ssi4onnx==1.0.4 svs4onnx==1.0.0 sympy==1.14.0
tensorboard==2.19.0 tensorboard-data-server==0.7.2 tensorflow==2.19.0 tensorflow-io-gcs-filesystem==0.37.1
termcolor==3.3.0 tf_keras==2.19.0 typing_extensions==4.16.0 Werkzeug==3.1.9 wrapt==2.5.2
"
STAMP="$VENV/.resflex-onnx2tf"
WANT="${REQUIREMENTS[*]} constraints-v$CONSTRAINTS_VERSION"

works() {
    [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
        && "$VENV/bin/python" -c "import onnx2tf, tensorflow, onnx_graphsurgeon, sng4onnx, onnxsim" >/dev/null 2>&1
}

if works; then
    echo "onnx2tf environment already set up: $VENV"
    exit 0
fi

"$PYTHON" - <<'EOF'
import sys
if not ((3, 10, 12) <= sys.version_info[:3] < (3, 13)):
    sys.exit(f"setup-onnx2tf: need Python 3.10.12 .. 3.12 for onnx2tf/TensorFlow 2.19, got {sys.version.split()[0]}"
             " (set PYTHON=/path/to/python3.11)")
EOF

start=$SECONDS
echo "creating the onnx2tf environment in $VENV (about 1 GB of wheels; a few minutes)"
mkdir -p "$(dirname "$VENV")"
rm -f "$STAMP"
"$PYTHON" -m venv "$VENV"
printf '%s\n' $CONSTRAINTS > "$VENV/resflex-constraints.txt"
# (grep drops pip's notes about index folders configured on some machines but absent; pip's status still counts)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$VENV/resflex-constraints.txt" \
    "${REQUIREMENTS[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
# Check the tool imports and answers before declaring the environment usable.
if ! check=$(TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -c "import onnx2tf, tensorflow as tf, onnx, numpy; \
print('onnx2tf', onnx2tf.__version__, 'tensorflow', tf.__version__, 'onnx', onnx.__version__, 'numpy', \
numpy.__version__)" 2>&1); then
    echo "$check" >&2
    echo "setup-onnx2tf: the new environment does not import onnx2tf" >&2
    exit 1
fi
echo "$check" | tail -n 1
echo "$WANT" > "$STAMP"
echo "onnx2tf environment ready in $((SECONDS - start)) s: $VENV"
if [ "$VENV" != "$HOME/.cache/resflex/onnx2tf-venv" ] && [ "${RESFLEX_ONNX2TF_VENV:-}" != "$VENV" ]; then
    echo "set RESFLEX_ONNX2TF_VENV=$VENV so resflex finds it"
fi
