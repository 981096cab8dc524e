"""Issue 10, defects 1–2 (and the zip half of 11): every file an entry or artifact names is a safe relative path
inside the bundle, listed with a sha256 and verified before anything opens it; symlinks are refused everywhere."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle.io import Bundle, extract_zip, write_zip
from resflex.mobile.bundle.schema import SchemaError
from resflex.mobile.selector import Selector

ONNX = "onnx/model_fp32_32.onnx"


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle, name, doc):
    (bundle / name).write_text(json.dumps(doc))


# --------------------------------------------------------------------------- defect 1: entry names


@pytest.mark.parametrize("name, match", [
    ("../../outside/x.onnx", "does not match"),  # escapes the bundle
    ("/etc/passwd", "does not match"),  # absolute
    ("sub/../../x.onnx", "does not match"),
    ("model_fp32_99.onnx", "not this artifact's file or one of its extra_files"),  # safe, but not listed
    ("model_fp32.pte", "not this artifact's file"),  # another artifact's file
])
def test_onnx_entry_must_be_a_listed_file_of_its_artifact(crafted, tmp_path, name, match):
    bundle = crafted()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.onnx").write_bytes(b"evil")
    doc = _manifest(bundle)
    doc["artifacts"][0]["entries"][1]["name"] = name
    _write(bundle, "manifest.json", doc)
    for verify in (True, False):
        with pytest.raises(SchemaError, match=match):
            Bundle.open(bundle, verify)


@pytest.mark.parametrize("entry, match", [
    ("../../outside/x.onnx", "does not match"),
    ("/abs/x.onnx", "does not match"),
    ("forward_999", "is not an entry of"),
])
def test_lut_entry_is_a_checked_name_of_its_artifact(crafted, entry, match):
    bundle = crafted()
    table = json.loads((bundle / "lut.json").read_text())
    table["operating_points"][3]["entry"] = entry
    _write(bundle, "lut.json", table)
    with pytest.raises(SchemaError, match=match):
        Bundle.open(bundle, verify=False)


def test_lut_point_must_agree_with_its_manifest_artifact(crafted):
    bundle = crafted()
    table = json.loads((bundle / "lut.json").read_text())
    table["operating_points"][0]["resolution"] = 24  # entry model_fp32_32.onnx serves 32
    table["operating_points"][1]["resolution"] = 99
    _write(bundle, "lut.json", table)
    with pytest.raises(SchemaError, match="serves 32"):
        Bundle.open(bundle, verify=False)


def test_profile_refuses_an_escaping_entry_before_running_anything(crafted, tmp_path, monkeypatch):
    from resflex.profiling import profile as prof

    ran = []
    monkeypatch.setattr(prof, "run_worker", lambda *a, **k: ran.append(a) or [])
    bundle = crafted()
    doc = _manifest(bundle)
    doc["artifacts"][0]["entries"][0]["name"] = "../../outside/x.onnx"
    _write(bundle, "manifest.json", doc)
    with pytest.raises(SchemaError):
        prof.profile(prof.ProfileConfig(str(bundle), runtimes=("onnxruntime",), progress=False))
    assert ran == []


def test_every_entry_file_is_verified(crafted):
    bundle = crafted()
    opened = Bundle.open(bundle)
    assert opened.entry_file(ONNX, "model_fp32_24.onnx") == bundle / "onnx" / "model_fp32_24.onnx"
    assert opened.entry_file("executorch/model_fp32.pte", "forward_24") is None
    (bundle / "onnx" / "model_fp32_24.onnx").write_bytes(b"swapped after packaging")
    with pytest.raises(SchemaError, match="checksum mismatch"):
        Bundle.open(bundle)


# --------------------------------------------------------------------------- defect 2: symlinks


def _symlink_artifact(bundle, tmp_path):
    """Replace one artifact by a symlink to an identical file outside the bundle (sha256 and size match)."""
    victim = bundle / "onnx" / "model_fp32_24.onnx"
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside)


def _symlink_folder(bundle, tmp_path):
    outside = tmp_path / "outside_dir"
    (bundle / "onnx").rename(outside)
    (bundle / "onnx").symlink_to(outside, target_is_directory=True)


def _symlink_lut(bundle, tmp_path):
    outside = tmp_path / "outside_lut.json"
    (bundle / "lut.json").rename(outside)
    (bundle / "lut.json").symlink_to(outside)


@pytest.mark.parametrize("damage", [_symlink_artifact, _symlink_folder, _symlink_lut])
def test_symlinks_are_refused_by_every_reader(crafted, tmp_path, damage, capsys):
    bundle = crafted()
    damage(bundle, tmp_path)
    with pytest.raises(SchemaError, match="symlink"):
        Bundle.open(bundle)
    assert main(["inspect", str(bundle)]) == 2
    assert "symlink" in capsys.readouterr().err
    if damage is _symlink_lut:
        with pytest.raises(SchemaError, match="symlink"):
            Selector.from_bundle(bundle)


def test_special_file_as_artifact_is_refused_without_hanging(crafted):
    bundle = crafted()
    victim = bundle / "executorch" / "model_fp32.pte"
    victim.unlink()
    os.mkfifo(victim)  # reading it would block forever
    with pytest.raises(SchemaError, match="not a regular file"):
        Bundle.open(bundle)


def test_write_zip_refuses_symlinks(crafted, tmp_path):
    bundle = crafted()
    _symlink_artifact(bundle, tmp_path)
    with pytest.raises(SchemaError, match="symlink"):
        write_zip(bundle, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_zip_round_trip_of_a_good_bundle(crafted, tmp_path):
    bundle = crafted()
    write_zip(bundle, tmp_path / "b.zip")
    out = extract_zip(tmp_path / "b.zip", tmp_path / "unzipped")
    assert Bundle.open(out).lut == Bundle.open(bundle).lut


# --------------------------------------------------------------------------- extraction


def _zip(path, members):
    """members: (name, bytes, mode or None)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return path


@pytest.mark.parametrize("members, match", [
    ([("../escape.txt", b"x", None)], "not a safe relative path"),
    ([("/abs.txt", b"x", None)], "not a safe relative path"),
    ([("a\\..\\b.txt", b"x", None)], "not a safe relative path"),
    ([("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symlink or special file"),
    ([("a.txt", b"x", None), ("a.txt", b"y", None)], "appears twice"),
    ([("zeros.bin", b"\0" * (50 * 2**20), None)], "zip bomb"),
])
def test_extract_zip_refuses_and_writes_nothing(tmp_path, members, match):
    archive = _zip(tmp_path / "evil.zip", members)
    with pytest.raises(SchemaError, match=match):
        extract_zip(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_extract_zip_size_cap_and_no_silent_overwrite(tmp_path):
    archive = _zip(tmp_path / "b.zip", [("lut.json", b"{}" * 1000, None)])
    with pytest.raises(SchemaError, match="over the limit"):
        extract_zip(archive, tmp_path / "capped", max_bytes=100)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "lut.json").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        extract_zip(archive, dest)
    assert (dest / "lut.json").read_text() == "mine"
    (dest / "lut.json").unlink()
    extract_zip(archive, dest)  # an empty folder is fine
    assert (dest / "lut.json").read_bytes() == b"{}" * 1000


def test_not_a_zip_is_a_schema_error(tmp_path):
    (tmp_path / "x.zip").write_bytes(os.urandom(512))
    with pytest.raises(SchemaError, match="not a readable zip"):
        extract_zip(tmp_path / "x.zip", tmp_path / "out")
