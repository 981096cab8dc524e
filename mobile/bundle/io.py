"""A bundle on disk: a directory with manifest.json, lut.json and the artifacts (optionally zipped).

Written atomically (build in a temporary sibling directory, then rename), read with validation, checksum
verification and path checks, so a reader never sees a half bundle or a file outside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .. import __version__
from .schema import (
    LUT,
    Backend,
    Manifest,
    SchemaError,
    document_bytes,
    entry_file,
    read_json,
    read_json_data,
    safe_relpath,
)

MANIFEST, LUT_FILE, POLICY_FILE = "manifest.json", "lut.json", "selector_policy.json"


def _tree_files(folder: Path, skip_hidden: bool = False) -> list[Path]:
    """The regular files under `folder`, sorted, found with lstat (nothing is followed or opened); a symlink or a
    special file (FIFO, socket, device) anywhere raises SchemaError naming it. `skip_hidden` leaves top-level hidden
    entries (temporaries, the output marker) out of the list, after checking their types like everything else."""
    files, folders = [], [Path(folder)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for e in entries:
                path, mode = Path(e.path), e.stat(follow_symlinks=False).st_mode
                rel = path.relative_to(folder).as_posix()
                if stat.S_ISLNK(mode):
                    raise SchemaError(f"{folder}: {rel} is a symlink; a bundle may not contain symlinks")
                if stat.S_ISDIR(mode):
                    folders.append(path)
                elif not stat.S_ISREG(mode):
                    raise SchemaError(f"{folder}: {rel} is not a regular file or folder (a FIFO, socket or device)")
                elif not (skip_hidden and rel.split("/")[0].startswith(".")):
                    files.append(path)
    return sorted(files)


def _open_regular(path: Path):
    """`open(path, "rb")` that refuses, without blocking, anything but a regular file (a FIFO would block open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SchemaError(f"{path}: not a regular file (a FIFO, socket or device)")
    return os.fdopen(fd, "rb")


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a directory (e.g. .mlpackage) as its sorted relative paths and contents; a symlink or
    special file inside a directory, or a special file given, raises SchemaError."""
    h, path = hashlib.sha256(), Path(path)
    folder = path.is_dir()
    for f in _tree_files(path) if folder else [path]:
        if folder:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with _open_regular(f) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def size_of(path: Path) -> int:
    path = Path(path)
    return sum(p.lstat().st_size for p in _tree_files(path)) if path.is_dir() else path.stat().st_size


MAX_ZIP_BYTES = 4 * 2**30  # extract_zip: total uncompressed size
MAX_ZIP_RATIO = 200  # extract_zip: uncompressed ÷ archive bytes (model weights compress < 2×, JSON ~10×)
# The marker resflex writes into every folder it creates (bundle, report, simulation, search, adapt), at mkdtemp time:
# `--overwrite` replaces only a folder carrying it (or an empty one), and the stale-temporary cleaner removes only
# folders carrying it. File names alone never make a folder resflex's.
OUTPUT_MARKER = ".resflex-output.json"
_MAX_MARKER_BYTES = 4096


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _write_marker(folder: Path, written_by: str) -> None:
    """Mark `folder` as resflex's: who wrote it, the version, and the writing process (the owner of a temporary)."""
    doc = {"written_by": written_by, "version": __version__, "pid": os.getpid()}
    (folder / OUTPUT_MARKER).write_text(json.dumps(doc) + "\n")


def _read_marker(folder: Path) -> dict | None:
    """The marker of `folder` if it has a valid one: a regular file (not a symlink), small, a JSON object whose
    `written_by` names resflex and whose `pid` is a positive integer; None otherwise."""
    path = Path(folder) / OUTPUT_MARKER
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MARKER_BYTES:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("written_by"), str) and doc["written_by"].startswith("resflex") \
        and isinstance(doc.get("pid"), int) and not isinstance(doc["pid"], bool) and doc["pid"] > 0
    return doc if ok else None


def marked_temp_dir(parent: Path, name: str, written_by: str) -> Path:
    """A new temporary folder `.NAME.PID.*.tmp` (mode 0700) in `parent`, marked as this process's right away,
    so `clean_stale(parent, NAME)` removes it once this process is gone."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    try:
        _write_marker(tmp, written_by)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def clean_stale(folder: Path, name: str) -> list[Path]:
    """Remove the temporaries `.NAME.PID.*.tmp` in `folder` that a killed resflex run left (kill -9, power loss).
    Only what this user owns and whose writer PID is gone: a file, or a folder carrying resflex's marker (whose pid
    is gone too). Anything else named like a temporary — a user's folder, a file without a pid — stays. Returns what
    was removed."""
    removed = []
    for p in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
        pid = p.name[len(name) + 2:].split(".")[0]
        try:
            st = p.lstat()
        except OSError:
            continue
        if not pid.isdigit() or st.st_uid != os.getuid() or _pid_alive(int(pid)):
            continue
        if stat.S_ISDIR(st.st_mode):
            marker = _read_marker(p)
            if marker is None or _pid_alive(marker["pid"]):
                continue
            shutil.rmtree(p, ignore_errors=True)
        elif stat.S_ISREG(st.st_mode):
            p.unlink(missing_ok=True)
        else:
            continue
        removed.append(p)
    return removed


def written_by_resflex(folder: Path) -> bool:
    """A folder `--overwrite` may replace: it carries resflex's marker (`OUTPUT_MARKER`, a regular file)."""
    return _read_marker(Path(folder)) is not None


def check_out(out: Path, flag: str = "--out") -> Path:
    """Refuse output paths that cannot be a new folder: '.', '..', the current folder or one above it, the root, a
    path through a file, a symlink."""
    out = Path(out)
    name = out.resolve().name if out.name in ("", ".", "..") else out.name
    resolved = out.resolve()
    if out.name in ("", ".", "..") or not name or Path.cwd().resolve().is_relative_to(resolved):
        raise ValueError(f"{flag} {out}: give a new folder's name (not '.', '..', the current folder or one above "
                         "it); the output is written beside it and then renamed into place")
    if out.is_symlink():
        raise ValueError(f"{flag} {out}: is a symlink; give a real folder path")
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(f"{flag} {out}: {parent} is a file, not a folder")
            break
    return out


def check_writable(folder: Path, what: str = "folder") -> None:
    """Raise PermissionError now if nothing can be created in `folder` (read-only mount, permissions) — before any
    long measurement whose results would then be lost."""
    try:
        fd, name = tempfile.mkstemp(prefix=".resflex-write-check.", dir=folder)
    except OSError as e:
        raise PermissionError(f"{folder}: cannot write to this {what} ({e.strerror or e}); nothing was measured or "
                              "changed") from None
    os.close(fd)
    os.unlink(name)


def check_replaceable(out: Path, overwrite: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, an `out` that `staging_dir` would not replace: a file, an existing folder without
    `overwrite`, or a non-empty folder that does not carry resflex's marker."""
    out = check_out(Path(out), flag)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} is a file, not a folder; remove it or choose another {flag}")
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it or choose another {flag}")
        if any(out.iterdir()) and not written_by_resflex(out):
            raise FileExistsError(f"{out} is not a folder resflex wrote (it has no {OUTPUT_MARKER}, the marker resflex "
                                  "writes into every folder it creates); --overwrite replaces only resflex's own "
                                  "outputs. An output of a resflex version before the marker is refused too: remove "
                                  f"it yourself or choose another {flag}")
    return out


@contextlib.contextmanager
def staging_dir(out: Path, overwrite: bool = False, written_by: str = "resflex") -> Iterator[Path]:
    """Yield a temporary directory beside `out` (named `.OUT.PID.*.tmp`, carrying resflex's marker from the start);
    on success it replaces `out` atomically, on failure it goes. An existing `out` is replaced only as
    `check_replaceable` allows. Stale temporaries of `out` left by a killed run are removed first."""
    out = check_replaceable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out.parent)
    clean_stale(out.parent, out.name)
    tmp = marked_temp_dir(out.parent, out.name, written_by)
    try:
        yield tmp
        if out.exists():
            # an empty folder to rename onto; once `out` is in it, it carries `out`'s marker
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.old.", suffix=".tmp", dir=out.parent))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_folder(out: str | Path, overwrite: bool = False, keep: str | Path | None = None,
                  written_by: str = "resflex") -> Iterator[Path]:
    """`staging_dir(out)` for a folder of results (`resflex report`, `resflex simulate`) after two checks: `out` must
    not be (or contain) the folder `keep` (the bundle the results are about), and an existing non-empty `out` is
    replaced only with `overwrite`."""
    out = Path(out)
    if keep is not None:
        kept = Path(keep).resolve()
        if out.resolve() == kept or kept.is_relative_to(out.resolve()):
            raise ValueError(f"--out {out} would replace the bundle {keep}; choose another folder")
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it or choose "
                              "another --out")
    with staging_dir(out, overwrite=True, written_by=written_by) as stage:
        yield stage

def _bundle_files(bundle: Path) -> list[Path]:
    """Every regular file under `bundle` except top-level hidden ones (temporaries, the output marker); a symlink or
    special file anywhere, hidden or not, raises SchemaError."""
    return _tree_files(bundle, skip_hidden=True)


def write_zip(bundle: Path, archive: Path) -> Path:
    """Zip a bundle directory (paths relative to it), atomically; refuses symlinks and special files, leaves out
    top-level hidden files (temporaries)."""
    bundle, archive = Path(bundle), Path(archive)
    files = _bundle_files(bundle)
    clean_stale(archive.parent, archive.name)
    fd, name = tempfile.mkstemp(prefix=f".{archive.name}.{os.getpid()}.", suffix=".tmp", dir=archive.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.relative_to(bundle).as_posix())
        os.replace(name, archive)
    finally:
        Path(name).unlink(missing_ok=True)
    return archive


def extract_zip(archive: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES, max_ratio: float = MAX_ZIP_RATIO) -> Path:
    """Extract a bundle archive into `dest` (new, or an empty folder), atomically. Refuses unsafe member names
    (absolute, '..', backslashes), duplicates, symlinks and special files, more than `max_bytes` uncompressed, an
    expansion over `max_ratio` × the archive's size (a zip bomb), and members whose data exceed their declared
    size. Nothing is written to `dest` unless every check passes."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest}: exists and is not an empty folder; extract into a new folder")
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise SchemaError(f"{archive}: not a readable zip archive: {e}") from None
    with z:
        infos, seen, total = z.infolist(), set(), 0
        for info in infos:
            name = info.filename.removesuffix("/") if info.is_dir() else info.filename
            safe_relpath(name, f"{archive}: member")
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise SchemaError(f"{archive}: member {name!r} is a symlink or special file; a bundle holds only "
                                  "files and folders")
            if name in seen:
                raise SchemaError(f"{archive}: member {name!r} appears twice")
            if name == OUTPUT_MARKER:
                raise SchemaError(f"{archive}: member {name!r} is the marker resflex writes itself; a bundle archive "
                                  "does not hold it")
            seen.add(name)
            total += info.file_size
        if total > max_bytes:
            raise SchemaError(f"{archive}: {total} bytes uncompressed, over the limit of {max_bytes}")
        if total > max_ratio * max(archive.stat().st_size, 1):
            raise SchemaError(f"{archive}: expands {total / max(archive.stat().st_size, 1):.0f}× (limit {max_ratio}×);"
                              " refusing a likely zip bomb")
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(dest.parent, dest.name)
        tmp = marked_temp_dir(dest.parent, dest.name, "resflex extract")
        try:
            for info in infos:
                target = tmp / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                left = info.file_size
                with z.open(info) as src, open(target, "xb") as out:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        left -= len(chunk)
                        if left < 0:
                            raise SchemaError(f"{archive}: member {info.filename!r} holds more than its declared "
                                              f"{info.file_size} bytes")
                        out.write(chunk)
            if dest.exists():
                dest.rmdir()
            os.replace(tmp, dest)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SchemaError(f"{archive}: corrupt or unsupported archive: {e}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


@contextlib.contextmanager
def lut_lock(bundle: str | Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the bundle's advisory lock (`fcntl.flock` on the bundle folder itself, so no lock file is left in it):
    lut.json writers take turns. A second writer waits up to `timeout_s`, then fails with TimeoutError."""
    try:
        fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise SchemaError(f"{bundle}: cannot open the bundle folder ({e.strerror or e})") from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{bundle}: another process has been writing {LUT_FILE} for over "
                                       f"{timeout_s:.0f} s (the bundle is locked); try again when it is done") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_lut_locked(path: Path, table: LUT) -> None:
    data = document_bytes(table, str(path))  # a LUT every reader would refuse is never written
    clean_stale(path.parent, LUT_FILE)  # under the lock every temporary of lut.json is a dead writer's
    fd, name = tempfile.mkstemp(prefix=f".{LUT_FILE}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_lut(bundle: str | Path, table: LUT) -> Path:
    """Replace a bundle's lut.json atomically, under the bundle's lock (validated; a crash leaves the old file)."""
    path = Path(bundle) / LUT_FILE
    with lut_lock(bundle):
        _write_lut_locked(path, table)
    return path


def update_lut(bundle: str | Path, change) -> LUT:
    """Read lut.json, apply `change(lut) -> LUT` and write the result, all under the bundle's lock, so concurrent
    writers (two `profile` runs, `profile --import`) never lose each other's entries. Returns the LUT written."""
    path = Path(bundle) / LUT_FILE
    with lut_lock(bundle):
        table = change(read_json(LUT, path))
        _write_lut_locked(path, table)
    return table


def inside(root: Path, relpath: str, where: str) -> Path:
    """`root / relpath` after checking that it cannot leave `root`: a safe relative path, no symlink on the way or
    (for a folder such as .mlpackage) inside it, nothing but regular files and folders, and a resolved location
    under the resolved root."""
    safe_relpath(relpath, where)
    path, step = root / relpath, root
    for part in PurePosixPath(relpath).parts:
        step = step / part
        if step.is_symlink():
            raise SchemaError(f"{where}: {relpath!r} passes through the symlink {step.relative_to(root)}; a bundle may "
                              "not contain symlinks")
    if path.exists():
        if not (path.is_file() or path.is_dir()):
            raise SchemaError(f"{where}: {relpath!r} is not a regular file or folder")
        if path.is_dir():
            _tree_files(path)  # SchemaError on a symlink or special file inside
        if not path.resolve().is_relative_to(root.resolve()):
            raise SchemaError(f"{where}: {relpath!r} resolves outside the bundle")
    return path


def onnx_external_locations(path: Path, where: str) -> list[str]:
    """The external-data `location`s an ONNX graph names (initializers, sparse initializers, node attributes,
    subgraphs and functions), read without loading any external data. Bytes that do not parse as an ONNX model name
    none (no runtime can load them either). Without the `onnx` package the check is skipped with a warning."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        warnings.warn(f"{path}: the onnx package is not installed; its external-data locations were not checked",
                      stacklevel=2)
        return []
    try:
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError:
        return []
    tensors, graphs, nodes = [], [model.graph], [n for f in model.functions for n in f.node]
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            tensors += [*g.initializer, *(t for s in g.sparse_initializer for t in (s.values, s.indices))]
            nodes += g.node
            continue
        for attr in nodes.pop().attribute:
            tensors += [*([attr.t] if attr.HasField("t") else []), *attr.tensors,
                        *(t for s in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else [])
                          for t in (s.values, s.indices)),
                        *(t for s in attr.sparse_tensors for t in (s.values, s.indices))]
            graphs += [*([attr.g] if attr.HasField("g") else []), *attr.graphs]
    locations = []
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            location = {e.key: e.value for e in t.external_data}.get("location")
            if location is None:
                raise SchemaError(f"{where}: tensor {t.name!r} is external but names no location")
            locations.append(location)
    return locations


class Bundle:
    """An opened bundle: the validated `lut`, the `manifest` (when the folder has one), the raw selector policy
    document (when it has one) and verified access to the files its manifest lists.

    `Bundle.open` is the one reader: convert's inspect, the selector, simulate, profile and report use it. It refuses
    a symlink or special file anywhere in the folder. A file is handed out by `file(relpath)` only if the manifest
    lists it with a sha256, its path stays inside the bundle, it is a folder only as a `.mlpackage`, it has no other
    hard link, its bytes match and (ONNX) every external-data file its graph names is one of the same artifact's
    listed files, verified the same way (checked once per file)."""

    def __init__(self, root: Path, lut: LUT, manifest: Manifest | None, policy: dict | None):
        self.root, self.lut, self._manifest, self.policy = root, lut, manifest, policy
        self._listed = {} if manifest is None else {
            f: sha for a in manifest.artifacts for f, sha in ((a.file, a.sha256), *((x.file, x.sha256) for x in a.extra_files))}
        self._artifact = {} if manifest is None else {
            f: a for a in manifest.artifacts for f in (a.file, *(x.file for x in a.extra_files))}
        self._verified: set[str] = set()

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Bundle:
        """Read and validate `path/lut.json`, `manifest.json` (required with `verify`) and `selector_policy.json`
        (optional); with `verify`, every file the manifest lists is checked now."""
        root = Path(path)
        if not root.is_dir():
            raise SchemaError(f"{root}: not a bundle directory (expected {MANIFEST} and {LUT_FILE} inside)")
        _bundle_files(root)  # no symlink or special file anywhere, listed or not (checked with lstat, nothing opened)
        for name in (MANIFEST, LUT_FILE, POLICY_FILE):
            inside(root, name, str(root))
            if (root / name).exists() and not (root / name).is_file():
                raise SchemaError(f"{root / name}: expected a file, found a folder")
        manifest = read_json(Manifest, root / MANIFEST) if verify or (root / MANIFEST).exists() else None
        lut = read_json(LUT, root / LUT_FILE)
        policy = read_json_data(root / POLICY_FILE, "selector policy") if (root / POLICY_FILE).exists() else None
        if policy is not None and not isinstance(policy, dict):
            raise SchemaError(f"{root / POLICY_FILE}: expected a JSON object of policy fields")
        if manifest is not None:
            artifacts = {a.file: a for a in manifest.artifacts}
            for i, op in enumerate(lut.operating_points):
                where = f"{root / LUT_FILE}: operating_points[{i}]"
                a = artifacts.get(op.artifact)
                if a is None:
                    raise SchemaError(f"{where}.artifact {op.artifact!r} is not an artifact of {MANIFEST}")
                if (a.backend, a.precision) != (op.backend, op.precision):
                    raise SchemaError(f"{where}: {op.backend.value} {op.precision.value}, but {MANIFEST} lists "
                                      f"{op.artifact!r} as {a.backend.value} {a.precision.value}")
                if a.compute_units is not None and op.compute_unit not in a.compute_units:
                    raise SchemaError(f"{where}.compute_unit {op.compute_unit!r}: {MANIFEST} offers {op.artifact!r} on "
                                      f"{', '.join(a.compute_units)} only" + (
                                          " (a CPU-only artifact: its bias scales are ones only the CPU kernels "
                                          "ignore, so the GPU delegate or NNAPI would compute wrong outputs)"
                                          if a.compute_units == ["CPU"] else ""))
                entries = {e.name: e for e in a.entries}
                if op.entry not in entries:
                    raise SchemaError(f"{where}.entry {op.entry!r} is not an entry of {op.artifact!r} in {MANIFEST} "
                                      f"(its entries: {', '.join(entries)})")
                if entries[op.entry].resolution != op.resolution:
                    raise SchemaError(f"{where}: resolution {op.resolution}, but {MANIFEST} says entry {op.entry!r} "
                                      f"serves {entries[op.entry].resolution}")
        bundle = cls(root, lut, manifest, policy)
        if verify:
            for relpath in bundle._listed:
                bundle.file(relpath)
        return bundle

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise SchemaError(f"{self.root}: no {MANIFEST} (a bundle written by `resflex convert` has one)")
        return self._manifest

    def file(self, relpath: str) -> Path:
        """The verified path of a file (or .mlpackage folder) the manifest lists; SchemaError names what is wrong."""
        where = f"{self.root / MANIFEST}"
        if relpath not in self._listed:
            self.manifest  # noqa: B018 — a clear error when there is no manifest at all
            raise SchemaError(f"{where}: {relpath!r} is not a file listed in the manifest")
        path = inside(self.root, relpath, where)
        if relpath not in self._verified:
            if not path.exists():
                raise SchemaError(f"{self.root}: artifact file {relpath} listed in {MANIFEST} is missing")
            if path.is_dir() and not relpath.endswith(".mlpackage"):
                raise SchemaError(f"{where}: {relpath!r} is a folder; only a .mlpackage artifact may be a folder")
            for f in _tree_files(path) if path.is_dir() else [path]:
                if f.lstat().st_nlink > 1:
                    raise SchemaError(f"{where}: {f.relative_to(self.root).as_posix()!r} has other hard links; a "
                                      "bundle's files may not be shared with files elsewhere")
            digest = sha256_of(path)
            if digest != self._listed[relpath]:
                raise SchemaError(f"{self.root}: checksum mismatch for {relpath}: sha256 {digest}, {MANIFEST} says "
                                  f"{self._listed[relpath]} — the file was modified or corrupted")
            self._verified.add(relpath)
            try:
                self._check_external_data(relpath, path)
            except BaseException:
                self._verified.discard(relpath)
                raise
        return path

    def _check_external_data(self, relpath: str, path: Path) -> None:
        """An ONNX graph file may name external data only as files listed for its own artifact (then verified)."""
        a = self._artifact[relpath]
        graphs = {a.file, *(entry_file(a, e.name) for e in a.entries)}
        if a.backend is not Backend.ONNX or not (relpath in graphs or relpath.endswith(".onnx")):
            return
        where = f"{self.root / relpath}: ONNX external data"
        own = {a.file, *(x.file for x in a.extra_files)}
        folder = PurePosixPath(relpath).parent
        for location in onnx_external_locations(path, where):
            target = (folder / safe_relpath(location, where)).as_posix()
            if target not in own:
                raise SchemaError(f"{where}: {location!r} is not one of the files {MANIFEST} lists for the artifact "
                                  f"{a.file!r} (each listed with a sha256): {', '.join(sorted(own))}")
            self.file(target)

    def entry_file(self, artifact: str, entry: str) -> Path | None:
        """The verified file an entry names (ONNX: one file per resolution), or None where the backend's entries are
        methods/functions/signatures inside the artifact's file."""
        a = next((a for a in self.manifest.artifacts if a.file == artifact), None)
        if a is None or entry not in {e.name for e in a.entries}:
            raise SchemaError(f"{self.root / MANIFEST}: no entry {entry!r} in artifact {artifact!r}")
        relpath = entry_file(a, entry)
        return None if relpath is None else self.file(relpath)
