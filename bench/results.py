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
import statistics
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


def time_revisions(before: str | None, into: Path, keys, runs: int, run_one) -> dict:
    """`run_one(version, key, pythonpath)` (one timed child: {"cpu": s, "wall": s}) `runs` times per key for this
    tree ("after") and, given `before`, for `checkout_revision(before)` too, the versions alternating within each key:
    {(version, key): [timing, ...]}, "before" first."""
    versions = {"after": None} if before is None else {"before": checkout_revision(before, into), "after": None}
    times = {(version, key): [] for version in versions for key in keys}
    for _ in range(runs):
        for key in keys:
            for version, path in versions.items():
                times[version, key].append(run_one(version, key, path))
    return times


def print_timing_table(times: dict, keys, key_column: str | None, same=None, same_column: str = "same output") -> None:
    """The `time_revisions` table: per key (a `key_column` column unless None) and version the CPU seconds of each
    run, median CPU and wall seconds; with a "before", after ÷ before and `same(key)` (both versions wrote the same
    output) on the "after" row."""
    before = any(version == "before" for version, _ in times)
    runs = ", ".join(f"run {i + 1}" for i in range(max(len(ts) for ts in times.values())))
    lead = f"| {key_column} " if key_column else ""
    print(f"{lead}| version | CPU s ({runs}) | median CPU s | median wall s |"
          + (f" after / before | {same_column} |" if before else ""))
    print(("|---" if key_column else "") + "|---|---:|---:|---:|" + ("---:|---|" if before else ""))
    for key in keys:
        for version in ("before", "after") if before else ("after",):
            ts = times[version, key]
            cpu = statistics.median(t["cpu"] for t in ts)
            each = ", ".join(f"{t['cpu']:.1f}" for t in ts)
            wall = statistics.median(t["wall"] for t in ts)
            row = (f"| {key} " if key_column else "") + f"| {version} | {each} | {cpu:.1f} | {wall:.1f} |"
            if before:
                base = statistics.median(t["cpu"] for t in times["before", key])
                row += f" {cpu / base:.2f} | {'yes' if same(key) else 'NO'} |" if version == "after" else " | |"
            print(row)


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
