"""ExecuTorch backend: one multi-method .pte per precision, run in ExecuTorch's own runtime, weights stored once."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("executorch")

from resflex.convert.backends.executorch import (  # noqa: E402
    ExecuTorchBackend,
    executorch_versions,
    pte_named_data,
)
from resflex.convert.bake import bake  # noqa: E402
from resflex.mobile.models import create_model  # noqa: E402

RESOLUTIONS = (32, 24, 16)
METHODS = {"forward_32", "forward_24", "forward_16", "forward"}


def _model(width: float, randomize) -> nn.Module:
    torch.manual_seed(0)
    return randomize(create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=width, num_classes=4))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, signed_randomized):
    """Export once per module: fp32 and int8, all resolutions and the largest alone (for the size ratio)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # width 4 (64/128 channels, ~0.22 M weights) so weights, not per-method bookkeeping, dominate the bytes
        model = _model(width=4.0, randomize=signed_randomized)
        be = ExecuTorchBackend(sharing="auto")  # fp32: a mixed plan (the stem folded per resolution, the rest shared)
        baked = {r: bake(model, r, bn=be.bn_style) for r in RESOLUTIONS}
        g = torch.Generator().manual_seed(1)
        calib = {r: torch.randn(16, 3, r, r, generator=g) for r in RESOLUTIONS}
        out = {}
        for precision in be.precisions:
            folder = tmp_path_factory.mktemp(precision)
            full = be.export(baked, precision, calib, folder / "all")
            one = be.export({32: baked[32]}, precision, calib, folder / "one")
            out[precision] = (full, folder / "all", one, folder / "one")
        yield be, baked, out
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_one_pte_with_a_method_per_resolution(exported, precision):
    be, _, out = exported
    full, folder, _, _ = out[precision]
    assert full.backend == "executorch" and full.precision == precision and full.layout == "NCHW"
    assert full.files == (f"model_{precision}.pte",) and list(folder.iterdir()) == [folder / full.files[0]]
    assert [(e.resolution, e.name, e.input_shape) for e in full.entries] == [
        (r, f"forward_{r}", (1, 3, r, r)) for r in RESOLUTIONS]
    assert be.runner(full, folder).method_names == METHODS


def _compare(exported, precision, n):
    be, baked, out = exported
    full, folder, _, _ = out[precision]
    runner = be.runner(full, folder)
    g = torch.Generator().manual_seed(2)
    for entry in full.entries:
        x = torch.randn(n, 3, entry.resolution, entry.resolution, generator=g)
        with torch.no_grad():
            ref = baked[entry.resolution](x).numpy()
        got = runner.run(entry, x.numpy())
        assert got.shape == ref.shape and got.dtype == np.float32
        yield entry, ref, got
    largest = full.entries[0]
    x = torch.randn(2, 3, largest.resolution, largest.resolution, generator=g).numpy()
    default = runner.run(dataclasses.replace(largest, name="forward"), x)
    np.testing.assert_array_equal(default, runner.run(largest, x))  # `forward` is the largest resolution


def test_fp32_matches_torch_in_the_executorch_runtime(exported):
    for entry, ref, got in _compare(exported, "fp32", n=8):
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        assert rel <= 1e-4, f"{entry.name}: max relative error {rel:.2e}"


def test_int8_agrees_with_torch_in_the_executorch_runtime(exported):
    for entry, ref, got in _compare(exported, "int8", n=64):
        agreement = (got.argmax(1) == ref.argmax(1)).mean()
        assert agreement >= 0.9, f"{entry.name}: top-1 agreement {agreement:.3f}"


def test_weights_are_stored_once(exported, record_property):
    be, baked, out = exported
    k = len(RESOLUTIONS)
    folded = set(out["fp32"][0].folded_layers)
    assert folded == set(be.fp32_plan(baked).folded) == {"features.0.0"}  # the cheap stem folded, big ones shared
    ratios = {}
    for precision, (full, folder, one, one_folder) in out.items():
        ratios[precision] = (folder / full.files[0]).stat().st_size / (one_folder / one.files[0]).stat().st_size
        record_property(f"size_ratio_3_to_1_{precision}", round(ratios[precision], 4))
        # XNNPACK keys constants by content hash: a weight of at least 1 KiB appears once in the file when it is
        # shared and once per method when its BN was folded in (fp32 only; int8 shares every conv).
        itemsize, copies = (4, lambda n: k if n in folded else 1) if precision == "fp32" else (1, lambda n: 1)
        expected = sorted(size for name, m in baked[32].named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                          for size in [m.weight.numel() * itemsize] * copies(name) if size >= 1024)
        large = {key: n for key, n in pte_named_data(folder / full.files[0]).items() if n >= 1024}
        assert sorted(large.values()) == expected, precision
        if precision == "int8":  # the same int8 bytes as the resolution exported alone
            assert large.items() <= pte_named_data(one_folder / one.files[0]).items()
    print(f"3-resolution / 1-resolution .pte bytes: {ratios}")
    assert ratios["fp32"] <= 1.15
    assert ratios["int8"] <= 1.15


def test_unshared_export_folds_bn_per_resolution(tmp_path, signed_randomized):
    """`share_weights=False`: plain BN-folded graphs (the fastest fp32 graph), still exact."""
    torch.set_num_threads(1)
    model = _model(width=0.5, randomize=signed_randomized)
    be = ExecuTorchBackend(share_weights=False)
    baked = {16: bake(model, 16, bn=be.bn_style)}
    exported = be.export(baked, "fp32", {}, tmp_path)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref = baked[16](x).numpy()
    got = be.runner(exported, tmp_path).run(exported.entries[0], x.numpy())
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert "not shared" in exported.notes


def test_bad_inputs(tmp_path, signed_randomized):
    model = _model(width=0.5, randomize=signed_randomized)
    be = ExecuTorchBackend()
    baked = {16: bake(model, 16, bn=be.bn_style)}
    with pytest.raises(ValueError, match="expected one of: fp32, int8"):
        be.export(baked, "fp16", {}, tmp_path)
    with pytest.raises(ValueError, match="calibration"):
        be.export(baked, "int8", {}, tmp_path)
    with pytest.raises(ValueError, match="no baked resolutions"):
        be.export({}, "fp32", {}, tmp_path)


def test_versions_for_the_manifest():
    versions = executorch_versions()
    assert set(versions) == {"executorch", "torch", "torchao"}
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]


def test_speed_sharing_folds_every_fp32_conv_per_resolution(tmp_path, signed_randomized):
    """`--sharing speed`: every fp32 method is the BN-folded graph (each conv's weight once per method), exact."""
    torch.set_num_threads(1)
    model = _model(width=2.0, randomize=signed_randomized)
    be = ExecuTorchBackend()
    be.sharing = "speed"
    baked = {r: bake(model, r, bn=be.bn_style) for r in RESOLUTIONS}
    exported = be.export(baked, "fp32", {}, tmp_path)
    k = len(RESOLUTIONS)
    def weight_bytes(kind):
        return [m.weight.numel() * 4 for m in baked[32].modules() if isinstance(m, kind) and m.weight.numel() >= 256]

    large = sorted(n for n in pte_named_data(tmp_path / exported.files[0]).values() if n >= 1024)
    assert large == sorted(weight_bytes(nn.Conv2d) * k + weight_bytes(nn.Linear))
    runner = be.runner(exported, tmp_path)
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        ref = baked[24](x).numpy()
    got = runner.run(next(e for e in exported.entries if e.resolution == 24), x.numpy())
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert "--sharing speed" in exported.notes


def _int8_runs(be, baked, calib, folder):
    """Export int8 with `be`; the .pte's named constants and every method's outputs on fixed images."""
    exported = be.export(baked, "int8", calib, folder)
    runner = be.runner(exported, folder)
    g = torch.Generator().manual_seed(3)
    outputs = [runner.run(e, torch.randn(8, 3, e.resolution, e.resolution, generator=g).numpy())
               for e in exported.entries]
    return pte_named_data(folder / exported.files[0]), outputs, (folder / exported.files[0]).stat().st_size


def test_int8_compact_constants_run_bit_identical_to_the_previous_serialization(tmp_path, monkeypatch, signed_randomized):
    """Bias scales serialized as the weight-scale bytes (one blob), 16-byte segment alignment and 16-digit content
    keys: the installed runtime loads the file and every method's outputs equal, bit for bit, those of the previous
    serialization (separate bias-scale blobs, 128-byte alignment, 64-digit keys); the file is smaller."""
    import resflex.convert.backends.executorch as et

    torch.set_num_threads(1)
    model = _model(width=0.5, randomize=signed_randomized)
    be = ExecuTorchBackend()
    baked = {r: bake(model, r, bn=be.bn_style) for r in (24, 16)}
    g = torch.Generator().manual_seed(1)
    calib = {r: torch.randn(8, 3, r, r, generator=g) for r in baked}
    named, outputs, size = _int8_runs(be, baked, calib, tmp_path / "compact")
    with monkeypatch.context() as m:  # the serialization before issue 23
        m.setattr(et, "_compact_xnnpack_constants", contextlib.nullcontext)
        m.setattr(et, "SEGMENT_ALIGNMENT", 128)
        old_named, old_outputs, old_size = _int8_runs(be, baked, calib, tmp_path / "previous")
    for got, ref in zip(outputs, old_outputs, strict=True):
        np.testing.assert_array_equal(got, ref)
    assert size < old_size
    assert all(len(key.removeprefix("scale_")) == et.KEY_HEX_CHARS for key in named)
    assert all(len(key.removeprefix("scale_")) == 64 for key in old_named)
    # one per-channel scale blob per conv and method (its weight scale, BN moved in) and one for the classifier
    # (no BN; quantized dynamically, so its bias stays float): the bias scales add none; before, each conv also had
    # a bias-scale blob per method
    convs = sum(isinstance(m, nn.Conv2d) for m in baked[24].modules())
    scales = [key for key in named if key.startswith("scale_")]
    assert len(scales) == convs * len(baked) + 1
    assert len([key for key in old_named if key.startswith("scale_")]) == convs * len(baked) + len(scales)
    # the int8 weights themselves are the same bytes
    assert sorted(n for k, n in named.items() if not k.startswith("scale_")) == sorted(
        n for k, n in old_named.items() if not k.startswith("scale_"))


def test_colliding_content_keys_fail_loudly(tmp_path, monkeypatch, signed_randomized):
    """Keys cut to nothing collide: the export raises NamedDataStore's duplicate-key error, it never writes a file
    whose methods would read each other's constants."""
    import resflex.convert.backends.executorch as et

    torch.set_num_threads(1)
    monkeypatch.setattr(et, "KEY_HEX_CHARS", 0)
    baked = {16: bake(_model(width=0.5, randomize=signed_randomized), 16, bn=ExecuTorchBackend.bn_style)}
    with pytest.raises(ValueError, match="Duplicate key"):
        ExecuTorchBackend().export(baked, "fp32", {}, tmp_path)
    assert not list(tmp_path.glob("*.pte"))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_lowering_decomposed_once_writes_the_bytes_of_to_edge_transform_and_lower(tmp_path, monkeypatch, precision,
                                                                                 signed_randomized):
    """`_edge_and_lower` (one decomposition retrace per method, issue 23 item 6) writes the same `.pte`, byte for
    byte, as ExecuTorch's `to_edge_transform_and_lower` (three per method)."""
    import resflex.convert.backends.executorch as et
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.set_num_threads(1)
    be = ExecuTorchBackend()
    model = _model(width=0.5, randomize=signed_randomized)
    baked = {r: bake(model, r, bn=be.bn_style) for r in (24, 16)}
    g = torch.Generator().manual_seed(1)
    calib = {r: torch.randn(8, 3, r, r, generator=g) for r in baked}
    once = be.export(baked, precision, calib, tmp_path / "once")
    monkeypatch.setattr(et, "_edge_and_lower", lambda programs: to_edge_transform_and_lower(
        dict(programs), partitioner=[XnnpackPartitioner()]))
    be.export(baked, precision, calib, tmp_path / "standard")
    file = once.files[0]
    assert (tmp_path / "once" / file).read_bytes() == (tmp_path / "standard" / file).read_bytes()


class _PassesAct(nn.Module):
    """A net on which XNNPACK's passes rewrite: a BatchNorm after a PReLU (DecomposeBatchNorm), a conv + ReLU
    (FuseActivationPass), a 6-way concat and a bilinear upsample."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.bn, self.pw = nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(4), nn.BatchNorm2d(4), \
            nn.Conv2d(4, 4, 1)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2), self.bn.weight.uniform_(0.5, 2)

    def forward(self, x):
        y = torch.relu(self.pw(self.bn(self.act(self.conv(x)))))
        y = torch.cat([y] * 6, dim=1)
        return nn.functional.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False).mean((2, 3))


def _count_retraces(monkeypatch) -> list:
    """Record the full retraces (`ExportPass.call` runs) XNNPACK's own passes make from now on."""
    from executorch.exir.pass_base import ExportPass

    calls, call = [], ExportPass.call

    def counted(self, gm):
        if type(self).__module__.startswith("executorch.backends.xnnpack."):
            calls.append(type(self).__name__)
        return call(self, gm)
    monkeypatch.setattr(ExportPass, "call", counted)
    return calls


@pytest.mark.parametrize("case", ["passes_act_fp32", "mobilenet_int8",
                                  pytest.param("mobilenet_fp32", marks=pytest.mark.slow)])
def test_skipping_idle_retraces_writes_the_same_bytes_with_fewer_retraces(tmp_path, monkeypatch, case,
                                                                          signed_randomized):
    """`_without_idle_retraces` (issue 23 item 6): an XNNPACK pass whose surgery changed nothing returns the graph
    instead of retracing it; the `.pte` is byte for byte the one the full retraces give, on a CNN where most passes
    find nothing and on a net where several rewrite."""
    import resflex.convert.backends.executorch as et

    torch.set_num_threads(1)
    if case == "passes_act_fp32":
        torch.manual_seed(0)
        net, x = _PassesAct().eval(), torch.randn(1, 3, 16, 16)
        programs = lambda: {"forward_16": torch.export.export(net, (x,))}  # noqa: E731
        lower = lambda: et._lower(programs(), alias=("forward", "forward_16")).buffer  # noqa: E731
    else:
        precision = case.split("_")[1]
        be = ExecuTorchBackend()
        baked = {16: bake(_model(width=0.5, randomize=signed_randomized), 16, bn=be.bn_style)}
        calib = {16: torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))}
        lower = lambda: (tmp_path / be.export(baked, precision, calib, tmp_path).files[0]).read_bytes()  # noqa: E731
    calls = _count_retraces(monkeypatch)
    skipped = lower()
    ran = list(calls)
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(et, "_without_idle_retraces", contextlib.nullcontext)
        full = lower()
    assert skipped == full
    assert 0 < len(ran) < len(calls)
    if case == "passes_act_fp32":  # the passes that rewrote still retraced
        assert {"DecomposeBatchNorm", "FuseActivationPass", "ChannelsLastTaggedReshapePass"} <= set(ran)


def test_skipping_idle_retraces_is_scoped():
    """The patch of ExportPass.call and of the XNNPACK pass manager's `_transform` is undone on exit, also after
    an error."""
    import resflex.convert.backends.executorch as et
    from executorch.backends.xnnpack import _passes as xnnpack_passes
    from executorch.exir.pass_base import ExportPass

    before = ExportPass.call, xnnpack_passes._transform, "call" in ExportPass.__dict__
    with pytest.raises(RuntimeError, match="inside"):
        with et._without_idle_retraces():
            assert ExportPass.call is not before[0]
            raise RuntimeError("inside")
    assert (ExportPass.call, xnnpack_passes._transform, "call" in ExportPass.__dict__) == before


def _count_codegens(monkeypatch) -> list:
    """Record every Python code generation of a graph's forward from now on."""
    calls, python_code = [], torch.fx.Graph.python_code

    def counted(self, *args, **kwargs):
        calls.append(1)
        return python_code(self, *args, **kwargs)
    monkeypatch.setattr(torch.fx.Graph, "python_code", counted)
    return calls


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_deferred_recompiles_write_the_same_bytes_with_fewer_codegens(tmp_path, monkeypatch, precision,
                                                                       signed_randomized):
    """`_deferred_recompiles` (issue 23 item 6): a graph's code is generated when needed, not after every edit;
    the `.pte` is byte for byte the one eager recompiles give."""
    import resflex.convert.backends.executorch as et

    torch.set_num_threads(1)
    be = ExecuTorchBackend()
    baked = {r: bake(_model(width=0.5, randomize=signed_randomized), r, bn=be.bn_style) for r in (24, 16)}
    calib = {r: torch.randn(8, 3, r, r, generator=torch.Generator().manual_seed(1)) for r in (24, 16)}
    calls = _count_codegens(monkeypatch)
    deferred = (tmp_path / "d" / be.export(baked, precision, calib, tmp_path / "d").files[0]).read_bytes()
    fewer = len(calls)
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(et, "_deferred_recompiles", contextlib.nullcontext)
        eager = (tmp_path / "e" / be.export(baked, precision, calib, tmp_path / "e").files[0]).read_bytes()
    assert deferred == eager
    assert 0 < fewer < 0.8 * len(calls)


def _negate_output(gm: torch.fx.GraphModule) -> None:
    """x → -relu(x): an edit that changes what forward computes."""
    out = gm.graph.output_node()
    with gm.graph.inserting_before(out):
        neg = gm.graph.call_function(torch.neg, (out.args[0],))
    out.args = (neg,)
    gm.recompile()


def test_deferred_recompiles_keep_graph_modules_correct_and_are_scoped():
    """Inside the scope an edited graph module runs, prints, pickles and shows its current code; one edited but not
    run is up to date after the scope; GraphModule is restored on exit, also after an error."""
    import pickle

    import resflex.convert.backends.executorch as et

    before = torch.fx.GraphModule.recompile, torch.fx.GraphModule.code, torch.fx.GraphModule.__str__
    x = torch.tensor([[-1.0, 2.0]])
    ran, idle = (torch.fx.symbolic_trace(nn.Sequential(nn.ReLU())) for _ in range(2))
    with pytest.raises(RuntimeError, match="inside"):
        with et._deferred_recompiles():
            assert torch.fx.GraphModule.recompile is not before[0]
            _negate_output(ran)
            _negate_output(idle)
            assert "neg" in ran.code and "neg" in str(ran)
            assert torch.equal(ran(x), torch.tensor([[0.0, -2.0]]))
            assert torch.equal(pickle.loads(pickle.dumps(ran))(x), torch.tensor([[0.0, -2.0]]))
            raise RuntimeError("inside")
    assert (torch.fx.GraphModule.recompile, torch.fx.GraphModule.code, torch.fx.GraphModule.__str__) == before
    assert "neg" in idle._code and torch.equal(idle(x), torch.tensor([[0.0, -2.0]]))


def test_a_kept_op_xnnpack_refuses_is_lowered_by_to_edge_transform_and_lower(tmp_path, monkeypatch):
    """XNNPACK asks to keep max_pool2d undecomposed, then refuses one with stride > kernel: the one-decomposition
    path would leave it undecomposed outside the delegate, so the export lowers again the standard way, and the
    file runs and matches torch."""
    import executorch.exir
    import resflex.convert.backends.executorch as et
    from resflex.convert.runtimes import ExecuTorchRuntime

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(1, stride=2), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 5)).eval()
    x = torch.randn(1, 3, 16, 16)
    standard = executorch.exir.to_edge_transform_and_lower
    calls = []
    monkeypatch.setattr(executorch.exir, "to_edge_transform_and_lower",
                        lambda *a, **k: calls.append(1) or standard(*a, **k))
    program = et._lower({"forward_16": torch.export.export(net, (x,))}, alias=("forward", "forward_16"))
    assert calls == [1]
    path = tmp_path / "pool.pte"
    path.write_bytes(program.buffer)
    got = ExecuTorchRuntime(path).method("forward_16").execute((x,))[0]
    np.testing.assert_allclose(got.numpy(), net(x).detach().numpy(), rtol=1e-5, atol=1e-5)
