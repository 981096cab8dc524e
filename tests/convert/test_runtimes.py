"""The one runtime layer (parity and host profiling both open artifacts through it) and the quiet conversion scope."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from resflex.convert import quiet
from resflex.convert.runtimes import RUNTIMES, Entry, host_units, open_runtime, runtime_for
from resflex.mobile.bundle.schema import BACKEND_RUNTIMES, COMPUTE_UNITS, RUNTIME_BACKENDS, Backend


def test_one_table_between_runtimes_and_backends():
    assert set(RUNTIMES) == set(RUNTIME_BACKENDS) and set(BACKEND_RUNTIMES) == set(Backend)
    for runtime, backend in RUNTIME_BACKENDS.items():
        assert runtime_for(backend) == runtime == RUNTIMES[runtime].name
        assert set(host_units(runtime)) <= set(COMPUTE_UNITS[backend])


def test_importing_the_runtime_layer_imports_no_runtime_and_no_torch():
    code = ("import sys, resflex.convert.runtimes, resflex.profiling.host; "
            "bad = [m for m in ('torch', 'onnxruntime', 'executorch', 'ai_edge_litert', 'coremltools') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_onnx_runtime_lists_loads_and_runs_entries(tmp_path):
    pytest.importorskip("onnxruntime")
    from resflex.convert.backends.onnx import export_onnx_file

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    for r in (16, 8):
        export_onnx_file(module, r, tmp_path / f"model_{r}.onnx")
    assert (tmp_path / "model_8.onnx").read_bytes() != (tmp_path / "model_16.onnx").read_bytes()
    rt = open_runtime("onnxruntime", tmp_path / "model_16.onnx", threads=1)
    assert rt.entries() == ["model_16.onnx", "model_8.onnx"]
    for r in (16, 8):
        entry = Entry(r, f"model_{r}.onnx", "image", "logits", (1, 3, r, r))
        x = torch.randn(5, 3, r, r)
        got = rt.run(entry, x.numpy())  # a batch, run one image at a time as exported
        with torch.no_grad():
            np.testing.assert_allclose(got, module(x).numpy(), rtol=1e-5, atol=1e-5)
        one = rt.load(entry)(rt.prepare(entry, x[:1].numpy()))  # what host profiling times
        np.testing.assert_allclose(one, got[:1], rtol=1e-6, atol=1e-6)
        with pytest.raises(ValueError, match="expects input"):
            rt.run(entry, np.zeros((1, 3, r + 1, r + 1), np.float32))
    assert rt.fresh().entries() == rt.entries()


def test_unknown_runtime_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="executorch, tflite, onnxruntime, coreml"):
        open_runtime("tvm", tmp_path / "x")


def test_converting_filters_third_party_warnings_and_logs_unless_verbose(caplog):
    import logging

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet.converting():
            warnings.warn_explicit("noise", FutureWarning, "copyreg.py", 1, module="copyreg")
            warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="resflex.convert.backends.executorch")
            logging.getLogger("torchao").warning("Failed to load a .so")
            assert not quiet.is_verbose()
        with quiet.converting(verbose=True):
            assert quiet.is_verbose()
            warnings.warn_explicit("noise", FutureWarning, "copyreg.py", 1, module="copyreg")
    assert [str(w.message) for w in seen] == ["ours", "noise"]
    assert "Failed to load" not in caplog.text
    assert not quiet.is_verbose()


def test_a_library_resetting_the_root_logger_inside_converting_stays_quiet(caplog):
    """XNNPACK's partitioner module runs `logging.basicConfig(level=WARNING)` when first imported, which can happen
    inside the block: its deprecation warning (once per lowered method) must still not reach the user."""
    import logging

    root = logging.getLogger()
    with quiet.converting():
        root.setLevel(logging.WARNING)  # what basicConfig does to the root on a fresh process
        logging.getLogger("executorch.backends.xnnpack.partition.xnnpack_partitioner").warning("DEPRECATION WARNING")
    assert "DEPRECATION" not in caplog.text


def test_native_stderr_lines_are_filtered_at_file_descriptor_level():
    code = ("import os, sys\n"
            "from resflex.convert.quiet import native_stderr_filtered\n"
            "with native_stderr_filtered():\n"
            "    os.write(2, b'[cpuinfo_utils.cpp:109] Failed to open midr file\\n')\n"
            "    os.write(2, b'a real error\\n')\n"
            "    print('python stderr', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.splitlines() == ["a real error", "python stderr"]
