"""Keep each benchmark's latest tables in `bench/RESULTS.md`, with the machine, the date and the exact command.

    with recorded("selector_bench"):
        ...print the tables...

Everything the block prints still goes to the terminal; on success it also replaces that benchmark's section of
RESULTS.md (between `<!-- begin NAME -->` and `<!-- end NAME -->`), atomically. Each script's `--no-record` leaves the
file alone, e.g. for a quick trial run.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nWritten by the `bench/` scripts (each replaces its own section when it finishes). "
          "Every section names the machine, the date and the exact command; numbers are medians measured side by "
          "side in one run unless the table says otherwise. `bundles/demo` is the bundle `scripts/quickstart.sh` "
          "writes.\n")


def checkout_revision(rev: str, into: Path) -> Path:
    """`git archive REV` of this repository under into/resflex; returns the folder to put on PYTHONPATH (a bench's
    "before": the same child run against an older revision)."""
    repo = RESULTS.parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
    tree = into / "tree"
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    (into / "resflex").symlink_to(tree, target_is_directory=True)
    return into


def child_env(pythonpath: Path | None = None) -> dict:
    """The environment of a timed child process: one thread, and `pythonpath` (a `checkout_revision`) first."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return env


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.buffer_ = stream, io.StringIO()

    def write(self, text):
        self.stream.write(text)
        return self.buffer_.write(text)

    def flush(self):
        self.stream.flush()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = [f"Python {platform.python_version()}"]
    for name in ("torch", "executorch", "onnxruntime", "coremltools"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions.append(f"{name} {module.__version__}")
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; {', '.join(versions)}"


def write_section(name: str, body: str, command: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section `name` of RESULTS.md."""
    text = path.read_text() if path.exists() else HEADER
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- begin {name} -->\n## {name}\n\n{stamp} · {machine()}\n\n```\n{command}\n```\n\n"
               f"{body.strip()}\n<!-- end {name} -->")
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".RESULTS.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def recorded(name: str, enabled: bool = True, argv: list[str] | None = None):
    """Tee stdout; on success write it as the section `name` of RESULTS.md (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    tee, stdout = _Tee(sys.stdout), sys.stdout
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = stdout
    if enabled:
        script = Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else name + ".py"  # a section per data set
        command = "python bench/" + script + " " + " ".join(shlex.quote(a) for a in argv)
        write_section(name, tee.buffer_.getvalue(), command.strip())
        print(f"(recorded in {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS})")
