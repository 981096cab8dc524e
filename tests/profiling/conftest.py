"""Shared fixtures of the profiling tests: a tiny converted bundle (built once) and a profiled copy of it."""

import shutil

import pytest
import torch

from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.models import create_model

RESOLUTIONS = (32, 24, 16)
CLASSES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]  # the synthetic data's first 4


def _tflite_available() -> bool:
    from resflex.convert.onnx2tf_env import find_onnx2tf

    try:
        find_onnx2tf()
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="session")
def tiny_checkpoint_path(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=len(CLASSES)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", model, CLASSES)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint_path, tmp_path_factory):
    """A tiny RS-Net converted to ExecuTorch, ONNX and (where onnx2tf is set up) TFLite, fp32, at 32/24/16 px.
    Shared by the session: copy it (`bundle_copy`) before changing it."""
    backends = ("executorch", "onnx") + (("tflite",) if _tflite_available() else ())
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    convert(ConvertConfig(str(tiny_checkpoint_path), str(out), backends=backends, precisions=("fp32",),
                          calib_samples=8, val_samples=8, progress=False))
    return out


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle: `bundle_copy()` (or `bundle_copy(source)`) → path."""

    def copy(source=None):
        dest = tmp_path / f"bundle{len(list(tmp_path.iterdir()))}"
        shutil.copytree(source or tiny_bundle, dest)
        return dest

    return copy


@pytest.fixture(scope="session")
def profiled_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle profiled once on the host under device id "host": every runtime, 1 and 2 threads."""
    from resflex.profiling.profile import ProfileConfig, profile

    dest = tmp_path_factory.mktemp("profiled") / "tiny"
    shutil.copytree(tiny_bundle, dest)
    profile(ProfileConfig(str(dest), runtimes=("executorch", "tflite", "onnxruntime"), threads=(1, 2), runs=6,
                          warmup=2, switch_repeats=2, progress=False))
    return dest
