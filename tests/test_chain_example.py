"""The whole chain through the public Python API — train, convert, profile on the host, select — as an app team's
build script or a notebook would drive it. docs/python-api.md includes the code between the snippet markers, so
the page shows exactly what this test runs."""

from pathlib import Path


def test_chain_through_the_public_api(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --8<-- [start:chain]
    from resflex.convert.pipeline import ConvertConfig, convert
    from resflex.mobile.selector import DeviceState, Selector
    from resflex.mobile.train import TrainConfig, train
    from resflex.profiling.profile import ProfileConfig, profile

    # 1. Train one network at two resolutions (tiny: a small CNN, built-in synthetic data, one epoch).
    run = TrainConfig(data="synthetic", arch="tiny_cnn", method="rsnet", resolutions=(32, 16), width=0.5,
                      epochs=1, batch_size=16, train_samples=64, val_samples=32, workers=0, device="cpu",
                      progress=False, out="runs/chain")
    train(run)

    # 2. Convert the checkpoint into a bundle: here ONNX fp32 only (every backend and int8 work the same way).
    bundle = convert(ConvertConfig(checkpoint=str(run.checkpoint_path), out="bundles/chain", backends=("onnx",),
                                   precisions=("fp32",), calib_samples=8, val_samples=16, progress=False))

    # 3. Time every operating point on this machine; the latencies go into the bundle's lut.json.
    lut = profile(ProfileConfig(bundle=str(bundle.bundle), device="host", runtimes=("onnxruntime",),
                                threads=(1,), runs=5, warmup=1, switch_cost=False, gemm_peak=False,
                                progress=False))

    # 4. The selector an app runs per frame: which operating point for this device state?
    selector = Selector.from_bundle(bundle.bundle, device="host", policy={"latency_budget_ms": 33})
    decision = selector.choose(DeviceState(battery=0.42, charging=False, thermal=1, cpu_load=0.3))
    print(decision.point.resolution, decision.point.backend.value, decision.reason)
    selector.observe(decision, measured_ms=decision.predicted_ms)  # feed back what the inference took
    # --8<-- [end:chain]

    assert bundle.ok and Path("bundles/chain/lut.json").is_file() and Path("runs/chain/checkpoint.pt").is_file()
    assert sorted(op.resolution for op in lut.operating_points) == [16, 32]
    assert {op.backend.value for op in lut.operating_points} == {"onnx"}
    assert "host" in lut.devices and decision.latency_source == "measured"
    assert decision.point in lut.operating_points and decision.predicted_ms > 0
