"""Issue 24, items 3–4: the bundle reader's rules. The shared hostile-bundle table (hostile_bundles.py, replayed by the
Kotlin and Swift suites too) through `Bundle.open` and the commands that read bundles, and ONNX external data that
must be a listed, hashed file of the same artifact."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle.schema import MAX_JSON_DEPTH, SchemaError, read_json_data

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("hostile_bundles", HERE / "hostile_bundles.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)
CASES = {name: expect for name, expect, _, _ in hostile.CASES}


def _within(seconds: float, fn):
    """fn()'s result or exception, or AssertionError if it runs longer (a reader blocked on a FIFO)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 — handed to the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked?)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The table written by its command line, exactly as the Kotlin and Swift suites run it."""
    out = tmp_path_factory.mktemp("hostile")
    subprocess.run([sys.executable, str(HERE / "hostile_bundles.py"), str(out)], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    return out


def test_table_shape(table):
    cases = json.loads((table / "cases.json").read_text())
    assert [c["name"] for c in cases] == list(CASES)
    assert all(set(c) == {"name", "expect", "why"} and c["expect"] in ("ok", "reject") for c in cases)
    assert all((table / c["name"] / "lut.json").is_symlink() or (table / c["name"] / "lut.json").exists()
               for c in cases)
    assert sum(c["expect"] == "reject" for c in cases) >= 17


@pytest.mark.parametrize("name", CASES)
def test_shared_table(table, name):
    """Accepted, or refused with SchemaError naming the bundle — never another exception, never a hang."""
    bundle = table / name
    if CASES[name] == "ok":
        assert _within(30, lambda: Bundle.open(bundle, verify=True)).lut.operating_points
        return
    with pytest.raises(SchemaError) as e:
        _within(30, lambda: Bundle.open(bundle, verify=True))
    assert str(bundle) in str(e.value)


REFUSED_BY = {"unlisted_symlink_system_file": "is a symlink", "unlisted_symlink_root": "is a symlink",
              "unlisted_fifo": "not a regular file", "hidden_temp_fifo": "not a regular file",
              "pte_is_folder": "only a .mlpackage artifact may be a folder"}


@pytest.mark.parametrize("name", REFUSED_BY)
@pytest.mark.parametrize("command", ["inspect", "profile", "report", "simulate", "select"])
def test_commands_refuse(table, tmp_path, capsys, name, command):
    """Every command that reads a bundle goes through Bundle.open; the documents-only readers (simulate, select)
    still refuse symlinks and special files, though not a wrong artifact kind they never open."""
    bundle = str(table / name)
    argv = {"inspect": [bundle], "profile": [bundle, "--runs", "1", "--warmup", "0"],
            "report": [bundle, "--out", str(tmp_path / "r")], "simulate": [bundle, "--out", str(tmp_path / "s")],
            "select": [bundle]}[command]
    rc = _within(120, lambda: main([command, *argv]))
    if name == "pte_is_folder" and command in ("simulate", "select"):
        assert rc == 0
        return
    err = capsys.readouterr().err
    assert rc == 2 and bundle in err and REFUSED_BY[name] in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_depth_bound_is_explicit(tmp_path):
    """Nesting is bounded by a number every reader applies, not by Python's stack: MAX_JSON_DEPTH levels pass,
    one more is refused even where the parser would manage."""
    path = tmp_path / "doc.json"
    for depth, ok in ((MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False), (500, False)):
        path.write_text('{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}")
        if ok:
            assert read_json_data(path) == {"a": json.loads("[" * (depth - 1) + "]" * (depth - 1))}
        else:
            with pytest.raises(SchemaError, match="nested too deeply"):
                read_json_data(path)


def test_hardlinked_listed_file_is_refused(crafted, tmp_path):
    bundle = crafted()
    os.link(bundle / "executorch/model_fp32.pte", tmp_path / "elsewhere.pte")
    with pytest.raises(SchemaError, match="hard links"):
        Bundle.open(bundle)


# --------------------------------------------------------------------------- ONNX external data

WEIGHTS = "onnx/model_fp32.weights"


def _graph(location: str | None, in_attribute: bool = False) -> bytes:
    """A one-node ONNX graph (y = x + w) whose constant w is external data at `location` (None: external with no
    location), held as an initializer or as a Constant node's attribute."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    if location is not None:
        w.external_data.add(key="location", value=location)
    w.external_data.add(key="length", value="4")
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    if in_attribute:
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=w))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [] if in_attribute else [w])
    return helper.make_model(graph).SerializeToString()


def _onnx_bundle(root: Path, docs, location: str | None = "model_fp32.weights", in_attribute: bool = False,
                 list_weights: bool = True) -> Path:
    """The crafted bundle with real ONNX graphs whose weights live in onnx/model_fp32.weights (listed with a sha256
    as an extra file of the ONNX artifact unless `list_weights` is false)."""
    files = {k: (_graph(location, in_attribute) if k.endswith(".onnx") else v) for k, v in docs.files().items()}
    files[WEIGHTS] = b"\0\0\x80\x3f"
    manifest = docs.manifest_for(files)
    if list_weights:
        manifest["artifacts"][0]["extra_files"].append({"file": WEIGHTS, "sha256": hashlib.sha256(files[WEIGHTS]).hexdigest(),
                                                        "bytes": 4})
    return docs.write_bundle(root, manifest, None, files)


def test_onnx_external_data_listed_is_accepted(tmp_path, docs):
    pytest.importorskip("onnx")
    bundle = _onnx_bundle(tmp_path / "b", docs)
    opened = Bundle.open(bundle)
    assert opened.entry_file("onnx/model_fp32_32.onnx", "model_fp32_16.onnx").name == "model_fp32_16.onnx"
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(bundle / "onnx/model_fp32_16.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(["y"], {"x": __import__("numpy").zeros(1, "float32")})[0].tolist() == [1.0]


@pytest.mark.parametrize("location, in_attribute, message", [
    ("/etc/hostname", False, "not a safe relative path"),
    ("../executorch/model_fp32.pte", False, "not a safe relative path"),
    ("unlisted.bin", False, "is not one of the files"),
    ("model_fp32_24.onnx/../x", False, "not a safe relative path"),
    (None, False, "names no location"),
    ("/etc/hostname", True, "not a safe relative path"),  # a Constant node's tensor, not an initializer
])
def test_onnx_external_data_outside_the_manifest_is_refused(tmp_path, docs, location, in_attribute, message):
    pytest.importorskip("onnx")
    bundle = _onnx_bundle(tmp_path / "b", docs, location, in_attribute)
    (bundle / "onnx/unlisted.bin").write_bytes(b"\0\0\x80\x3f")
    with pytest.raises(SchemaError, match=message) as e:
        Bundle.open(bundle)
    assert "model_fp32" in str(e.value) and "ONNX external data" in str(e.value)


def test_onnx_external_data_unlisted_weights_refused_lazily(tmp_path, docs):
    """Without --verify the graph is checked when its file is first handed out — before any runtime sees it."""
    pytest.importorskip("onnx")
    bundle = _onnx_bundle(tmp_path / "b", docs, list_weights=False)
    opened = Bundle.open(bundle, verify=False)
    with pytest.raises(SchemaError, match="is not one of the files"):
        opened.entry_file("onnx/model_fp32_32.onnx", "model_fp32_24.onnx")
    with pytest.raises(SchemaError, match="is not one of the files"):  # still refused the second time
        opened.entry_file("onnx/model_fp32_32.onnx", "model_fp32_24.onnx")


@pytest.mark.parametrize("damage, message", [
    ("symlink", "is a symlink"),
    ("hardlink", "hard links"),
    ("changed", "checksum mismatch"),
])
def test_onnx_external_data_file_must_be_plain_and_hashed(tmp_path, docs, damage, message):
    pytest.importorskip("onnx")
    bundle = _onnx_bundle(tmp_path / "b", docs)
    weights = bundle / WEIGHTS
    if damage == "symlink":
        (tmp_path / "outside.bin").write_bytes(weights.read_bytes())
        weights.unlink()
        weights.symlink_to(tmp_path / "outside.bin")
    elif damage == "hardlink":
        os.link(weights, tmp_path / "outside.bin")
    else:
        weights.write_bytes(b"\0\0\0\x40")
    with pytest.raises(SchemaError, match=message):
        Bundle.open(bundle)
