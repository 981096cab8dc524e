"""The shared hostile-bundle table (issue 24): bundle folders that the Python, Kotlin and Swift readers must all
accept ("ok") or refuse with their own error type ("reject") — without following a symlink, opening a FIFO or
overflowing the stack.

    python tests/adversarial/hostile_bundles.py OUT_DIR

writes OUT_DIR/<case>/ (one bundle folder per case) and OUT_DIR/cases.json = [{"name", "expect", "why"}, ...].
Built from the valid crafted bundle of conftest.py (torch-free)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import default_files, lut_doc, manifest_doc, write_bundle  # noqa: E402

from resflex.mobile.bundle.io import sha256_of, size_of  # noqa: E402
from resflex.mobile.bundle.schema import MAX_DOCUMENT_BYTES  # noqa: E402

PTE, ONNX32 = "executorch/model_fp32.pte", "onnx/model_fp32_32.onnx"
MLPACKAGE = "coreml/model_fp32.mlpackage"


def _valid(root: Path) -> Path:
    return write_bundle(root)


def _relist(root: Path, relpath: str) -> None:
    """Rewrite manifest.json so that `relpath` (an artifact's main file) carries its current sha256 and size."""
    doc = json.loads((root / "manifest.json").read_text())
    for a in doc["artifacts"]:
        if a["file"] == relpath:
            a["sha256"], a["bytes"] = sha256_of(root / relpath), size_of(root / relpath)
    (root / "manifest.json").write_text(json.dumps(doc))


def _with_mlpackage(root: Path) -> Path:
    """The valid bundle plus a Core ML artifact that is a folder (.mlpackage), listed with its folder sha256."""
    _valid(root)
    pkg = root / MLPACKAGE
    (pkg / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (pkg / "Manifest.json").write_text('{"fileFormatVersion": "1.0.0"}')
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"mlmodel bytes")
    doc = json.loads((root / "manifest.json").read_text())
    pte = next(a for a in doc["artifacts"] if a["file"] == PTE)
    doc["artifacts"].append({**pte, "backend": "coreml", "file": MLPACKAGE, "sha256": sha256_of(pkg),
                             "bytes": size_of(pkg), "runs_on_host": False,
                             "entries": [{**e, "name": f"forward_{e['resolution']}"} for e in pte["entries"]]})
    (root / "manifest.json").write_text(json.dumps(doc))
    return root


TFLITE_CPU = "tflite/model_int8_cpu.tflite"


def _with_cpu_only_tflite(root: Path, lut_units=("CPU",), compute_units=("CPU",)) -> Path:
    """The valid bundle plus TFLite int8's CPU-only artifact (manifest `compute_units`, as written) with LUT points
    on `lut_units`."""
    _valid(root)
    (root / TFLITE_CPU).parent.mkdir()
    (root / TFLITE_CPU).write_bytes(b"tflite int8 cpu-only")
    doc = json.loads((root / "manifest.json").read_text())
    pte = next(a for a in doc["artifacts"] if a["file"] == PTE)
    doc["artifacts"].append({**pte, "backend": "tflite", "precision": "int8", "file": TFLITE_CPU, "layout": "NHWC",
                             "sha256": sha256_of(root / TFLITE_CPU), "bytes": size_of(root / TFLITE_CPU),
                             "compute_units": list(compute_units) if isinstance(compute_units, tuple)
                             else compute_units,
                             "entries": [{**e, "name": f"serving_{e['resolution']}",
                                          "input_shape": [1, e["resolution"], e["resolution"], 3]}
                                         for e in pte["entries"]]})
    (root / "manifest.json").write_text(json.dumps(doc))
    lut = json.loads((root / "lut.json").read_text())
    mine = [p for p in lut["operating_points"] if p["artifact"] == PTE]
    lut["operating_points"] += [{**p, "backend": "tflite", "precision": "int8", "compute_unit": unit,
                                 "artifact": TFLITE_CPU, "entry": f"serving_{p['resolution']}", "latency": {}}
                                for unit in lut_units for p in mine]
    (root / "lut.json").write_text(json.dumps(lut))
    return root


def _replace(root: Path, relpath: str, make) -> None:
    (root / relpath).unlink()
    make(root / relpath)


def _symlink(target: str):
    return lambda path: path.symlink_to(target)


def _pte_folder(root: Path) -> None:
    """The listed .pte replaced by a folder whose folder-sha256 is written into the manifest (so only the kind is
    wrong)."""
    (root / PTE).unlink()
    (root / PTE).mkdir()
    (root / PTE / "program").write_bytes(b"pte program")
    _relist(root, PTE)


def _manifest_path(root: Path, path: str) -> None:
    doc = json.loads((root / "manifest.json").read_text())
    next(a for a in doc["artifacts"] if a["file"] == PTE)["file"] = path
    lut = json.loads((root / "lut.json").read_text())
    for op in lut["operating_points"]:
        if op["artifact"] == PTE:
            op["artifact"] = path
    (root / "manifest.json").write_text(json.dumps(doc))
    (root / "lut.json").write_text(json.dumps(lut))


def _lut_over_cap(root: Path) -> None:
    """A valid lut.json padded with whitespace to one byte over the cap: only the size limit refuses it."""
    with open(root / "lut.json", "ab") as f:
        f.write(b" " * (MAX_DOCUMENT_BYTES + 1 - f.tell()))


def _outside_file(root: Path, name: str, data: str) -> str:
    """A file in OUT_DIR/outside/ (outside every bundle) for symlinks to point at."""
    path = root.parent / "outside" / f"{root.name}.{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(data)
    return str(path)


# (name, expect, why, build(root)); every build starts from the valid crafted bundle unless it says otherwise.
CASES = [
    ("valid", "ok", "the valid crafted bundle", _valid),
    ("valid_mlpackage", "ok", "a .mlpackage artifact may be a folder", _with_mlpackage),
    ("hidden_temp_file", "ok", "top-level hidden temporaries (a dead writer's .lut.json.PID.*.tmp) are ignored",
     lambda r: (_valid(r), (r / ".lut.json.12345.abc.tmp").write_text("{half"))),
    ("output_marker_file", "ok", "the output marker .resflex-output.json is ignored",
     lambda r: (_valid(r), (r / ".resflex-output.json").write_text('{"written_by": "resflex"}'))),
    ("lut_symlink_outside", "reject", "lut.json is a symlink to a file outside the bundle",
     lambda r: (_valid(r), _replace(r, "lut.json", _symlink(_outside_file(r, "lut.json", json.dumps(lut_doc())))))),
    ("manifest_symlink_outside", "reject", "manifest.json is a symlink to a file outside the bundle",
     lambda r: (_valid(r), _replace(r, "manifest.json", _symlink(
         _outside_file(r, "manifest.json", json.dumps(manifest_doc(default_files()))))))),
    ("policy_symlink_outside", "reject", "selector_policy.json is a symlink to a file outside the bundle",
     lambda r: (_valid(r), (r / "selector_policy.json").symlink_to(_outside_file(r, "policy.json", "{}")))),
    ("artifact_symlink_inside", "reject", "a listed artifact is a symlink to an in-bundle file with the same bytes",
     lambda r: (_valid(r), (r / "executorch/real.pte").write_bytes(b"pte program"),
                _replace(r, PTE, _symlink("real.pte")))),
    ("unlisted_symlink_system_file", "reject", "an unlisted symlink to /etc/hostname",
     lambda r: (_valid(r), (r / "hostname").symlink_to("/etc/hostname"))),
    ("unlisted_symlink_root", "reject", "an unlisted symlink to the filesystem root",
     lambda r: (_valid(r), (r / "onnx" / "root").symlink_to("/", target_is_directory=True))),
    ("hidden_temp_symlink", "reject", "a top-level hidden temporary that is a symlink (hidden files are skipped "
     "for listing, not for file types)",
     lambda r: (_valid(r), (r / ".lut.json.12345.abc.tmp").symlink_to("/etc/hostname"))),
    ("artifact_fifo", "reject", "a listed artifact is a FIFO (opening it would block)",
     lambda r: (_valid(r), _replace(r, PTE, os.mkfifo))),
    ("lut_fifo", "reject", "lut.json is a FIFO (opening it would block)",
     lambda r: (_valid(r), _replace(r, "lut.json", os.mkfifo))),
    ("unlisted_fifo", "reject", "an unlisted FIFO in the bundle",
     lambda r: (_valid(r), os.mkfifo(r / "onnx" / "pipe"))),
    ("hidden_temp_fifo", "reject", "a top-level hidden temporary that is a FIFO",
     lambda r: (_valid(r), os.mkfifo(r / ".manifest.json.12345.abc.tmp"))),
    ("fifo_in_mlpackage", "reject", "a FIFO inside a .mlpackage folder artifact (its folder sha256 still matches)",
     lambda r: (_with_mlpackage(r), os.mkfifo(r / MLPACKAGE / "Data" / "pipe"))),
    ("lut_over_size_cap", "reject", f"lut.json is valid JSON padded to {MAX_DOCUMENT_BYTES} + 1 bytes (the cap)",
     lambda r: (_valid(r), _lut_over_cap(r))),
    ("lut_deeply_nested", "reject", "lut.json is 100000 nested arrays (a bounded depth, not a stack overflow)",
     lambda r: (_valid(r), (r / "lut.json").write_text("[" * 100_000 + "]" * 100_000))),
    ("policy_deeply_nested", "reject", "selector_policy.json nests 10000 arrays inside an object",
     lambda r: (_valid(r), (r / "selector_policy.json").write_text('{"x": ' + "[" * 10_000 + "]" * 10_000 + "}"))),
    ("pte_is_folder", "reject", "a listed .pte is a folder whose folder sha256 matches (only .mlpackage may be a "
     "folder)", lambda r: (_valid(r), _pte_folder(r))),
    ("checksum_mismatch", "reject", "a listed artifact's bytes differ from its sha256",
     lambda r: (_valid(r), (r / PTE).write_bytes(b"pte program, changed"))),
    ("manifest_dotdot_path", "reject", "an artifact path with '..' in manifest.json",
     lambda r: (_valid(r), _manifest_path(r, "../outside.pte"))),
    ("manifest_absolute_path", "reject", "an absolute artifact path in manifest.json",
     lambda r: (_valid(r), _manifest_path(r, "/etc/hostname"))),
    ("cpu_only_tflite", "ok", "TFLite int8's CPU-only artifact (compute_units [CPU]) with its LUT points on CPU",
     _with_cpu_only_tflite),
    ("cpu_only_tflite_point_on_gpu", "reject", "a LUT point runs the CPU-only artifact on the GPU delegate",
     lambda r: _with_cpu_only_tflite(r, ("CPU", "GPU"))),
    ("compute_units_unknown", "reject", "compute_units names a unit its backend does not have (TPU)",
     lambda r: _with_cpu_only_tflite(r, compute_units=("CPU", "TPU"))),
    ("compute_units_empty", "reject", "compute_units is an empty list (an artifact no unit may run)",
     lambda r: _with_cpu_only_tflite(r, compute_units=[])),
    ("compute_units_repeated", "reject", "compute_units names CPU twice",
     lambda r: _with_cpu_only_tflite(r, compute_units=("CPU", "CPU"))),
    ("compute_units_not_a_list", "reject", "compute_units is the string \"CPU\", not a list",
     lambda r: _with_cpu_only_tflite(r, compute_units="CPU")),
]


def generate(out_dir: str | Path) -> list[dict]:
    """Write every case's bundle folder under `out_dir` and `out_dir/cases.json`; returns the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for name, expect, why, build in CASES:
        build(out / name)
        table.append({"name": name, "expect": expect, "why": why})
    (out / "cases.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    print(f"{len(generate(sys.argv[1]))} cases in {sys.argv[1]}")
