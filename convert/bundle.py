"""A bundle on disk: a directory with manifest.json, lut.json and the artifacts (optionally zipped).

Written atomically (build in a temporary sibling directory, then rename), read with validation, checksum
verification and path checks, so a reader never sees a half bundle or a file outside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from resflex.mobile.lut import LUT, Manifest, SchemaError, read_json, safe_relpath, write_json

MANIFEST, LUT_FILE = "manifest.json", "lut.json"


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a directory (e.g. .mlpackage) as its sorted relative paths and contents."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def staging_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it replaces `out` atomically, on failure it goes."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"cannot write to {out.parent}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_zip(bundle: Path, archive: Path) -> Path:
    """Zip a bundle directory (paths relative to it), atomically."""
    tmp = archive.with_name(f".{archive.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in bundle.rglob("*") if p.is_file()):
            z.write(f, f.relative_to(bundle).as_posix())
    os.replace(tmp, archive)
    return archive


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract a bundle archive, refusing absolute paths and '..' in member names."""
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            safe_relpath(name, f"{archive}: member")
        z.extractall(dest)
    return dest


def write_lut(bundle: str | Path, table: LUT) -> Path:
    """Replace a bundle's lut.json atomically (validated; a crash leaves the old file intact)."""
    path = Path(bundle) / LUT_FILE
    tmp = path.with_name(f".{LUT_FILE}.tmp")
    try:
        write_json(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_bundle(path: str | Path, verify: bool = True) -> tuple[Manifest, LUT]:
    """Read and validate a bundle directory; with `verify`, every artifact's size and sha256 are checked."""
    path = Path(path)
    if not path.is_dir():
        raise SchemaError(f"{path}: not a bundle directory (expected {MANIFEST} and {LUT_FILE} inside)")
    manifest = read_json(Manifest, path / MANIFEST)
    lut = read_json(LUT, path / LUT_FILE)
    files = {a.file for a in manifest.artifacts}
    for i, op in enumerate(lut.operating_points):
        if op.artifact not in files:
            raise SchemaError(f"{path / LUT_FILE}: operating_points[{i}].artifact {op.artifact!r} is not an artifact "
                              f"of {MANIFEST}")
    if verify:
        for a in manifest.artifacts:
            for file, expected in ((a.file, a.sha256), *((x.file, x.sha256) for x in a.extra_files)):
                f = path / file
                if not f.exists():
                    raise SchemaError(f"{path}: artifact file {file} listed in {MANIFEST} is missing")
                digest = sha256_of(f)
                if digest != expected:
                    raise SchemaError(f"{path}: checksum mismatch for {file}: sha256 {digest}, {MANIFEST} says "
                                      f"{expected} — the file was modified or corrupted")
    return manifest, lut
