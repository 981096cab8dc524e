"""Resizable-NAS search (issue 13, item 3): enumeration, Pareto front, outputs, refusals, interruption."""

import csv
import dataclasses
import itertools
import json
import random

import pytest
import torch

from resflex.cli.main import main
from resflex.mobile import search as search_module
from resflex.mobile.bundle import schema
from resflex.mobile.bundle.io import sha256_of
from resflex.mobile.checkpoint import load_checkpoint, save_checkpoint
from resflex.mobile.macs import count_macs
from resflex.mobile.models import create_model
from resflex.mobile.search import (
    SearchConfig,
    SpatialConfig,
    check_configs_for,
    enumerate_configurations,
    pareto_front,
    read_configs,
    search,
    write_configs,
)

RES, SCALES = (32, 24), (1.0, 0.75, 0.5)
NAMES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]


@pytest.fixture(scope="module")
def resizable_ckpt(tmp_path_factory, randomized):
    torch.manual_seed(0)
    model = randomized(create_model("tiny_cnn", "resizable", RES, width=0.5, num_classes=4))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", model, NAMES)


@pytest.fixture(scope="module")
def searched(resizable_ckpt, tmp_path_factory):
    """`resflex search` run once through the command line (every configuration of the tiny model)."""
    out = tmp_path_factory.mktemp("search") / "out"
    code = main(["search", str(resizable_ckpt), "--out", str(out), "--samples", "24", "--no-progress"])
    assert code == 0
    return out


def test_enumeration_counts_and_seeded_sample():
    every = enumerate_configurations(RES, SCALES, 2, max_configs=100)
    assert len(every) == 2 * 3 ** 2 == len(set(every))
    assert set(every) == {(r, s) for r in RES for s in itertools.product(SCALES, repeat=2)}
    sample = enumerate_configurations(RES, SCALES, 2, max_configs=7, seed=1)
    assert len(sample) == 7 == len(set(sample)) and set(sample) <= set(every)
    assert {(32, (1.0, 1.0)), (24, (1.0, 1.0))} <= set(sample)  # the full configurations are always measured
    assert sample == enumerate_configurations(RES, SCALES, 2, max_configs=7, seed=1)  # reproducible
    assert sample != enumerate_configurations(RES, SCALES, 2, max_configs=7, seed=2)
    big = enumerate_configurations((224, 192, 160, 128, 96), SCALES, 5, max_configs=50, seed=0)  # 1215 in the space
    assert len(big) == 50 == len(set(big))
    with pytest.raises(ValueError, match="max_configs 1: expected at least 2"):
        enumerate_configurations(RES, SCALES, 2, max_configs=1)


def test_pareto_front_keeps_exactly_the_undominated_points():
    rng = random.Random(0)
    points = [SpatialConfig(32, [rng.choice(SCALES)] * 2, rng.randint(0, 20) / 20, rng.randint(1, 30))
              for _ in range(60)]
    front = pareto_front(points)

    def beats(q, p):
        return q.macs <= p.macs and q.top1 >= p.top1 and (q.macs < p.macs or q.top1 > p.top1)

    assert all(not any(beats(q, p) for q in points) for p in front)
    assert all(p in front or any(beats(q, p) for q in front) or any(
        q.macs == p.macs and q.top1 == p.top1 for q in front) for p in points)
    assert [p.macs for p in front] == sorted(p.macs for p in front)
    assert all(a.top1 < b.top1 for a, b in zip(front, front[1:]))  # cheaper is strictly less accurate


def test_search_writes_the_front_every_configuration_and_the_plot(searched, resizable_ckpt, capsys):
    doc = read_configs(searched)  # the folder or the file
    assert doc == read_configs(searched / "configs.json")
    assert (doc.kind, doc.schema_version, doc.arch, doc.method) == ("resflex.configs", "1.0", "tiny_cnn", "resizable")
    assert doc.checkpoint_sha256 == sha256_of(resizable_ckpt)
    assert (doc.space, doc.evaluated, doc.cost, doc.num_stages) == (18, 18, "macs", 2)
    rows = list(csv.DictReader(open(searched / "search.csv")))
    assert len(rows) == 18
    assert (searched / "front.png").stat().st_size > 1000
    front = [(p.resolution, tuple(p.stage_scales)) for p in doc.operating_points]
    on_front = [(int(r["resolution"]), tuple(float(s) for s in r["stage_scales"].split())) for r in rows
                if r["on_front"] == "1"]
    assert sorted(front) == sorted(on_front)
    evaluated = [SpatialConfig(int(r["resolution"]), [float(s) for s in r["stage_scales"].split()],
                               float(r["top1"]), int(r["macs"])) for r in rows]
    assert [(p.resolution, p.stage_scales) for p in pareto_front(evaluated)] == \
        [(p.resolution, p.stage_scales) for p in doc.operating_points]
    # MACs are count_macs on the model in that configuration; accuracy is the model's own on those images
    model, _ = load_checkpoint(resizable_ckpt)
    p = doc.operating_points[0]
    with model.at_config(p.resolution, p.stage_scales):
        assert p.macs == count_macs(model, torch.zeros(1, 3, p.resolution, p.resolution))
    assert int(next(r for r in rows if r["stage_scales"] == "1 1" and r["resolution"] == "32")["macs"]) > \
        int(next(r for r in rows if r["stage_scales"] == "0.5 0.5" and r["resolution"] == "32")["macs"])
    assert sum(r["resolution_only"] == "1" for r in rows) == 2
    assert check_configs_for(doc, model, doc.checkpoint_sha256, "configs.json") == \
        [(p.resolution, tuple(p.stage_scales)) for p in doc.operating_points]


def test_search_predicts_latency_from_a_bundles_latency_model(resizable_ckpt, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    line = schema.LatencyModel("onnxruntime", schema.Precision.FP32, "CPUExecutionProvider", 1, 0.5, 4000.0, 0.05, 4)
    schema.write_json(schema.LUT([], {"phone": schema.Device(latency_models=[line])}), bundle / "lut.json")
    result = search(SearchConfig(str(resizable_ckpt), str(tmp_path / "out"), samples=8, max_configs=6, seed=3,
                                 bundle=str(bundle), progress=False))
    doc = result.configs
    assert (doc.cost, doc.device, doc.latency_model, doc.evaluated, doc.space) == ("latency_ms", "phone", line, 6, 18)
    for p in result.evaluated:
        assert p.latency_ms == pytest.approx(0.5 + 4000.0 * p.macs / 1e9)
    with pytest.raises(ValueError, match="no device 'pixel'; it has: phone"):
        search(SearchConfig(str(resizable_ckpt), str(tmp_path / "out2"), bundle=str(bundle), device="pixel"))


def test_refused_inputs_name_the_value(resizable_ckpt, searched, tmp_path, tiny_rsnet_ckpt):
    with pytest.raises(ValueError, match="method 'rsnet' has no stage scales"):
        search(SearchConfig(str(tiny_rsnet_ckpt), str(tmp_path / "x"), progress=False))
    assert not (tmp_path / "x").exists()
    doc = read_configs(searched)
    model, _ = load_checkpoint(resizable_ckpt)
    sha = doc.checkpoint_sha256

    def with_point(**change):
        p = dataclasses.replace(doc.operating_points[0], **change)
        return dataclasses.replace(doc, operating_points=[p])

    with pytest.raises(ValueError, match="stage scale 0.6 in \\[0.6, 1.0\\] was not trained; trained factors: 1, 0.75"):
        check_configs_for(with_point(stage_scales=[0.6, 1.0]), model, sha, "c.json")
    with pytest.raises(ValueError, match="resolution 48 was not trained; training resolutions: \\[32, 24\\]"):
        check_configs_for(with_point(resolution=48), model, sha, "c.json")
    with pytest.raises(ValueError, match="searched on another model"):
        check_configs_for(doc, model, "0" * 64, "c.json")
    with pytest.raises(ValueError, match="searched on another model \\(arch resnet18"):
        check_configs_for(dataclasses.replace(doc, arch="resnet18"), model, sha, "c.json")
    # what the file itself cannot hold: a factor ≤ 0 or > 1, a stage count other than the document's
    data = json.loads((searched / "configs.json").read_text())
    for scales, message in (([1.5, 1.0], "factor 1.5 .* expected a factor in \\(0, 1\\]"),
                            ([0.0, 1.0], "factor 0.0 .* expected a factor in \\(0, 1\\]"),
                            ([1.0, 1.0, 1.0], "expected 2 factors, one per stage")):
        data["operating_points"][0]["stage_scales"] = scales
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(schema.SchemaError, match=f"bad.json.*operating_points.*{message}"):
            read_configs(bad)
    with pytest.raises(schema.SchemaError, match="kind is 'resflex.lut', expected 'resflex.configs'"):
        bad.write_text(json.dumps({**data, "kind": "resflex.lut"}))
        read_configs(bad)
    with pytest.raises(schema.SchemaError, match="configs.json: file not found"):
        read_configs(tmp_path)


def test_interrupted_search_leaves_no_output(resizable_ckpt, tmp_path, monkeypatch):
    calls = []

    def interrupt(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return count_macs(*args)

    monkeypatch.setattr(search_module, "count_macs", interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        search(SearchConfig(str(resizable_ckpt), str(out), samples=8, progress=False))
    assert len(calls) == 5
    assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder


@pytest.fixture
def tiny_rsnet_ckpt(tmp_path, randomized):
    model = randomized(create_model("tiny_cnn", "rsnet", RES, width=0.5, num_classes=4))
    return save_checkpoint(tmp_path / "rsnet" / "checkpoint.pt", model, NAMES)


def test_configs_round_trip(searched, tmp_path):
    doc = read_configs(searched)
    assert read_configs(write_configs(doc, tmp_path / "configs.json")) == doc
