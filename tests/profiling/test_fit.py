"""The latency model: least squares a + b·GMACs, and its error (leave-one-out from 3 points)."""

import math

import pytest

from resflex.mobile.bundle.schema import LUT, Backend, Latency, OperatingPoint, Precision
from resflex.profiling.fit import fit_error, fit_latency_models, fit_line


def test_fit_recovers_exact_line():
    x = [0.05, 0.1, 0.2, 0.3, 0.45]
    a, b = fit_line(x, [1.5 + 12.0 * v for v in x])
    assert a == pytest.approx(1.5) and b == pytest.approx(12.0)
    error, how = fit_error(x, [1.5 + 12.0 * v for v in x])
    assert error == pytest.approx(0, abs=1e-9) and how == "leave-one-out"


def test_leave_one_out_error_by_hand():
    # drop x=1: line through (2,2),(3,4) predicts 0 (error 1); drop 2: predicts 2.5 (0.25); drop 3: predicts 3 (0.25)
    error, how = fit_error([1, 2, 3], [1, 2, 4])
    assert how == "leave-one-out" and error == pytest.approx(0.5)
    error, how = fit_error([1, 2], [1, 5])
    assert how == "in-sample" and error == pytest.approx(0)


def test_fit_needs_two_distinct_x():
    with pytest.raises(ValueError, match="2 distinct x"):
        fit_line([1, 1], [2, 3])


def _op(resolution, macs, backend=Backend.ONNX, precision=Precision.FP32, unit="CPUExecutionProvider"):
    return OperatingPoint(resolution, backend, precision, unit, "onnx/m.onnx", f"m_{resolution}.onnx", macs, 10,
                          100, 3)


def _lat(runtime, threads, p50):
    return Latency(runtime, threads, 10, p50, p50, p50)


def test_latency_models_per_runtime_precision_unit_threads():
    ops = [_op(r, m) for r, m in ((32, 100_000_000), (24, 56_000_000), (16, 25_000_000))]
    table = LUT(ops)
    lat = {op.key(): [_lat("onnxruntime", 1, 0.5 + 20 * op.macs / 1e9),
                      _lat("onnxruntime", 2, 0.3 + 11 * op.macs / 1e9)] for op in ops}
    lat[ops[0].key()].append(_lat("onnxruntime", 4, 1.0))  # one point: no model
    models = {m.threads: m for m in fit_latency_models(table, lat)}
    assert sorted(models) == [1, 2]
    assert models[1].intercept_ms == pytest.approx(0.5) and models[1].ms_per_gmac == pytest.approx(20)
    assert models[2].intercept_ms == pytest.approx(0.3) and models[2].ms_per_gmac == pytest.approx(11)
    assert models[1].points == 3 and models[1].compute_unit == "CPUExecutionProvider"
    assert models[1].precision is Precision.FP32 and math.isclose(models[1].mean_abs_rel_error, 0, abs_tol=1e-9)
