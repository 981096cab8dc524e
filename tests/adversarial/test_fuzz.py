"""Issue 10: a property test that fuzzes lut.json / manifest.json / selector_policy.json / device_profile.json
documents through every Python reader. Each document is a valid one with 1–4 random mutations (a value replaced by
any JSON value — NaN, ±∞, 10^400, paths like '../x', wrong types, deep nesting —, a key dropped or added) or a
random JSON value outright. Asserted: the reader returns a valid result or raises the documented `SchemaError`
(a ValueError) — never another exception — and `Bundle.open` never opens a file outside the bundle.

The counts of documents tried per reader are `max_examples` below (200 each)."""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle import schema
from resflex.mobile.selector import DeviceState, Policy, Selector

EXAMPLES = 200
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_ODD_TEXT = st.sampled_from(["", "../../outside/x.onnx", "/etc/passwd", "a\\b", "./a", "a//b", "~", "1.0", "1.x",
                             "2.0", "NaN", "forward_32", "onnx/model_fp32_24.onnx", "lut.json", "\0", "é" * 3,
                             "host", "XNNPACK", "onnxruntime", "fp32", "int8", "executorch", "onnx", "0" * 64])
_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**53, 2**53 + 1, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.text(max_size=12), _ODD_TEXT)
_PLAUSIBLE = st.one_of(st.integers(0, 10**6), st.floats(0.0, 1.0), st.floats(1e-3, 1e6))
JSON = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def _containers(node, path=()):
    """Every (path, container) in a JSON tree."""
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            yield from _containers(v, (*path, k))


@st.composite
def mutated(draw, base: dict):
    doc = copy.deepcopy(base)
    if draw(st.integers(0, 19)) == 0:
        return draw(JSON)  # not even an object, sometimes
    for _ in range(draw(st.integers(1, 4))):
        containers = list(_containers(doc))
        _, node = containers[draw(st.integers(0, len(containers) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "duplicate"]))
        if isinstance(node, dict):
            keys = list(node)
            if op == "add" or not keys:
                node[draw(st.one_of(st.text(max_size=8), st.sampled_from(keys or ["x"])))] = draw(JSON)
            elif op == "drop":
                node.pop(draw(st.sampled_from(keys)))
            else:
                key = draw(st.sampled_from(keys))
                plain = isinstance(node[key], (int, float)) and not isinstance(node[key], bool)
                node[key] = draw(_PLAUSIBLE if plain and draw(st.booleans()) else JSON)  # often still valid
        else:
            if op == "add" or not node:
                node.append(draw(JSON))
            elif op == "drop":
                node.pop(draw(st.integers(0, len(node) - 1)))
            elif op == "duplicate":
                node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
            else:
                node[draw(st.integers(0, len(node) - 1))] = draw(JSON)
    return doc


def _policy_doc() -> dict:
    return Policy(latency_budget_ms=20.0, min_top1=0.5).to_dict()


def _profile_doc(docs) -> dict:
    table = docs.lut()
    ms = []
    for op in table["operating_points"][:3]:
        ms.append({"resolution": op["resolution"], "backend": op["backend"], "precision": op["precision"],
                   "compute_unit": op["compute_unit"], "entry": op["entry"],
                   "latency": {"runtime": "onnxruntime", "threads": 2, "runs": 10, "p50_ms": 1.0, "p90_ms": 1.1,
                               "p99_ms": 1.3}})
    return {"kind": "resflex.device_profile", "schema_version": "1.0", "device_id": "pixel-8", "facts": {},
            "checkpoint_sha256": "0" * 64, "measurements": ms}


def _selector_runs(table: schema.LUT) -> None:
    """A valid LUT must drive the selector without an exception (or refuse it with a SchemaError)."""
    try:
        sel = Selector(table, "host")
    except schema.SchemaError:
        return
    for state in (DeviceState(), DeviceState(battery=0.05, thermal=3, cpu_load=0.9, power_save=True)):
        d = sel.choose(state)
        sel.observe(d, 10**400)
        sel.observe(d, d.predicted_ms * 3 if d.predicted_ms < 1e300 else 1.0)


def _documented(call):
    try:
        return call()
    except schema.SchemaError:
        return None  # the documented error


@SETTINGS
@given(data=st.data())
def test_fuzzed_lut_documents(docs, data):
    doc = data.draw(mutated(docs.lut()))
    table = _documented(lambda: schema.from_dict(schema.LUT, doc, "lut.json"))
    if table is not None:
        json.dumps(schema.to_dict(table), allow_nan=False)  # a document that reads also writes, as JSON (no NaN)
        _selector_runs(table)


@SETTINGS
@given(data=st.data())
def test_fuzzed_manifest_documents(docs, data):
    doc = data.draw(mutated(docs.manifest()))
    manifest = _documented(lambda: schema.from_dict(schema.Manifest, doc, "manifest.json"))
    if manifest is not None:
        for a in manifest.artifacts:  # every file an entry names is one the manifest lists with a sha256
            listed = {a.file, *(x.file for x in a.extra_files)}
            for e in a.entries:
                path = schema.entry_file(a, e.name)
                assert path is None or path in listed


@SETTINGS
@given(data=st.data())
def test_fuzzed_device_profiles(docs, data):
    doc = data.draw(mutated(_profile_doc(docs)))
    _documented(lambda: schema.from_dict(schema.DeviceProfile, doc, "device_profile.json"))


@SETTINGS
@given(data=st.data())
def test_fuzzed_selector_policies(docs, data):
    doc = data.draw(mutated(_policy_doc()))
    policy = _documented(lambda: Policy.from_dict(doc, None, "selector_policy.json"))
    if policy is not None:
        table = schema.from_dict(schema.LUT, docs.lut())
        sel = Selector(table, "host", policy)
        d = sel.choose(DeviceState(thermal=2, battery=0.15))
        sel.observe(d, 5.0)


@contextlib.contextmanager
def _opened_files():
    """Record every path opened through open(), io.open, Path.open/read_* and os.open while inside."""
    seen: list[str] = []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def rec(path):
        if isinstance(path, (str, bytes, os.PathLike)):
            seen.append(os.fsdecode(path))

    def b_open(file, *a, **k):
        rec(file)
        return real_open(file, *a, **k)

    def i_open(file, *a, **k):
        rec(file)
        return real_io_open(file, *a, **k)

    def o_open(path, *a, **k):
        rec(path)
        return real_os_open(path, *a, **k)

    builtins.open, io.open, os.open = b_open, i_open, o_open
    try:
        yield seen
    finally:
        builtins.open, io.open, os.open = real_open, real_io_open, real_os_open


@pytest.fixture(scope="module")
def arena():
    """A folder holding the bundle under test and, beside it, files a malicious document may point at."""
    root = Path(tempfile.mkdtemp(prefix="resflex-fuzz-"))
    (root / "outside").mkdir()
    (root / "outside" / "x.onnx").write_bytes(b"outside")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@SETTINGS
@given(data=st.data())
def test_fuzzed_bundles_never_open_a_file_outside(docs, arena, data):
    which = data.draw(st.sampled_from(["manifest", "lut", "policy"]))
    bundle = arena / "b"
    shutil.rmtree(bundle, ignore_errors=True)
    files = docs.files()
    manifest, table = docs.manifest(), docs.lut()
    policy = None
    if which == "manifest":
        manifest = data.draw(mutated(manifest))
    elif which == "lut":
        table = data.draw(mutated(table))
    else:
        policy = data.draw(mutated(_policy_doc()))
    docs.write_bundle(bundle, manifest, table, files)
    if policy is not None:
        (bundle / "selector_policy.json").write_text(json.dumps(policy))
    root = bundle.resolve()
    for verify in (True, False):
        with _opened_files() as seen:
            opened = _documented(lambda: Bundle.open(bundle, verify))
            if opened is not None and opened.policy is not None:
                _documented(lambda: Policy.from_dict(opened.policy, None, "selector_policy.json"))
        outside = [p for p in seen if not Path(p).resolve().is_relative_to(root)]
        assert outside == [], f"opened outside the bundle: {outside}"
    sel = _documented(lambda: Selector.from_bundle(bundle, "host"))
    if sel is not None:
        sel.observe(sel.choose(DeviceState()), 1.0)
