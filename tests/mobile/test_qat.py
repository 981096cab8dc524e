import numpy as np
import pytest
import torch

from resflex.mobile.checkpoint import load_checkpoint, qat_ranges
from resflex.mobile.models import create_model
from resflex.mobile.qat import INPUT_POINT, ActivationRange, enable_qat, fake_quant_weight
from resflex.mobile.train import BASE_LR, QAT_FINETUNE_LR_FACTOR, TrainConfig, train


def test_weight_grid_is_onnx_runtimes_per_channel_int8():
    """The fake-quantized weight is exactly what ONNX Runtime's symmetric int8 quantizer gives back, channel by
    channel (the rule the ONNX backend writes; XNNPACK and TFLite use the same [-127, 127] symmetric grid)."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data

    w = torch.randn(6, 1, 3, 3) * torch.logspace(-3, 1, 6).view(-1, 1, 1, 1)  # depthwise, very different ranges
    fq = fake_quant_weight(w).numpy()
    for c in range(w.shape[0]):
        _, scale, q = quantize_data(w[c].numpy().ravel(), TensorProto.INT8, symmetric=True)
        np.testing.assert_allclose(fq[c].ravel(), np.asarray(q, np.float32) * np.float32(scale), rtol=1e-6, atol=0)


def test_weight_gradient_passes_straight_through():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    fake_quant_weight(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_activation_ranges_are_per_resolution():
    r = ActivationRange((32, 16))
    r(torch.linspace(-1, 1, 100), 32, True)
    assert r.seen.tolist() == [True, False]
    x = torch.linspace(-5, 5, 11)
    assert torch.equal(r(x, 16, False), x)  # never observed at 16: passes through
    y = r(x, 32, False)
    assert y.min() >= -1.01 and y.max() <= 1.01  # clipped to the range observed at 32
    assert len(torch.unique(r(torch.linspace(-1, 1, 10_000), 32, False))) <= 256


@pytest.mark.parametrize("arch, method, resolutions", [
    ("mobilenet_v2", "rsnet", (32, 24)), ("resnet18", "san", (32, 24)), ("tiny_cnn", "single", (32,))])
def test_enable_keeps_the_state_dict_and_remove_restores_the_model(arch, method, resolutions):
    model = create_model(arch, method, resolutions, 0.35, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    reference = model(x)
    qat = enable_qat(model)
    assert list(model.state_dict()) == list(before)
    model.train()
    for r in resolutions:
        model.set_resolution(r)
        model(torch.randn(4, 3, r, r)).sum().backward()
    model.eval()
    model.set_resolution(32)
    quantized = model(x)
    assert not torch.equal(quantized, reference)
    qat.remove()
    model.load_state_dict(before)
    assert torch.equal(model(x), reference)
    assert not any("QAT" in type(m).__name__ for m in model.modules())


def test_unsupported_method_is_refused():
    with pytest.raises(ValueError, match="--qat: method 'resizable' is not supported"):
        TrainConfig(method="resizable", resolutions=(32, 16), qat=True)
    model = create_model("mobilenet_v2", "resizable", (32, 16), 0.35, 10)
    with pytest.raises(ValueError, match="--qat"):
        enable_qat(model)


def test_qat_fine_tunes_a_float_checkpoint(tmp_path):
    base = dict(data="synthetic", arch="mobilenet_v2", method="rsnet", resolutions=(32, 16), width=0.35, epochs=1,
                batch_size=16, train_samples=64, val_samples=32, workers=0, progress=False, device="cpu")
    float_run = TrainConfig(**base, lr=0.05, out=str(tmp_path / "float"))
    train(float_run)
    qat_run = TrainConfig(**base, qat=True, init=str(float_run.checkpoint_path), out=str(tmp_path / "qat"))
    assert qat_run.lr == pytest.approx(BASE_LR * QAT_FINETUNE_LR_FACTOR)
    model = train(qat_run)
    assert not any("QAT" in type(m).__name__ for m in model.modules())  # train hands back a plain model
    loaded, payload = load_checkpoint(qat_run.checkpoint_path)  # an ordinary float checkpoint
    assert payload["train_state"]["train_config"]["qat"] is True
    assert set(loaded.state_dict()) == set(create_model("mobilenet_v2", "rsnet", (32, 16), 0.35, 10).state_dict())
    ranges = qat_ranges(payload, str(qat_run.checkpoint_path))  # the learned ranges, per resolution and point
    modules = dict(loaded.named_modules())
    for r in (32, 16):
        assert ranges[r][INPUT_POINT][0] < 0 < ranges[r][INPUT_POINT][1]  # normalized images
        assert len(ranges[r]) > 30 and all(p in modules for p in ranges[r] if p != INPUT_POINT)
        assert all(lo <= hi for lo, hi in ranges[r].values())
    assert ranges[32]["classifier.1"] != ranges[16]["classifier.1"]  # logits: one range per resolution
    _, float_payload = load_checkpoint(float_run.checkpoint_path)
    assert qat_ranges(float_payload) is None


def test_range_table_round_trips_through_a_checkpoint(tmp_path):
    """What `train --qat` saves is what a resumed run (and `convert --calib-from qat`) reads back; a resolution never
    trained has no ranges."""
    from resflex.mobile.checkpoint import read_checkpoint, save_checkpoint

    model = create_model("tiny_cnn", "rsnet", (32, 16), 0.5, 4)
    qat = enable_qat(model)
    model.train()
    model.set_resolution(32)
    model(torch.randn(4, 3, 32, 32))
    table = qat.range_table()
    qat.remove()
    path = save_checkpoint(tmp_path / "c.pt", model, list("abcd"), qat_ranges=table)
    ranges = qat_ranges(read_checkpoint(path), str(path))
    assert ranges[16] == {} and set(ranges[32]) == {INPUT_POINT, "features.0", "features.1", "features.2", "fc"}
    resumed = enable_qat(create_model("tiny_cnn", "rsnet", (32, 16), 0.5, 4))
    resumed.load_ranges(ranges)
    assert resumed.range_table() == table
