"""A backend's exports run in a child Python process while this process exports the others (`resflex convert` on a
machine with two or more cores): the exporters are mostly single-threaded Python, so two of them in two processes
take about the time of the longer one.

    job = BackgroundExport.start(backend, baked, ("fp16", "int8"), calib, out_dir, verbose=False)
    ...                                   # export other backends here
    exported = job.exported("int8")       # waits; raises the child's error for int8

The job (the backend object, the baked modules and the calibration images) goes to the child as one `torch.save`
file; the child (`python -m resflex.convert.background JOB`) exports every precision in order with the same
third-party filters as the parent (`resflex.convert.quiet`) and writes back each precision's `Exported` and seconds,
or its error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import Tensor, nn

from resflex.mobile.bundle.io import clean_stale, marked_temp_dir

from .backends.base import Exported
from .backends.tflite_worker import exit_with_parent
from .quiet import converting, native_stderr_filtered


def worker_folder(name: str) -> Path:
    """A private working folder for a child job: `.resflex-NAME.PID.*.tmp` (mode 0700) in the system temp folder,
    marked as this run's. `ChildJob.cancel` removes it; what a run killed with -9 left is removed here by the next
    run — only marked folders whose process is gone (`clean_stale`)."""
    parent, prefix = Path(tempfile.gettempdir()), f"resflex-{name}"
    clean_stale(parent, prefix)
    return marked_temp_dir(parent, prefix, "resflex convert")


# Exports ("backend" or "backend:precision") that run in a child process while this one exports the others, given
# two cores or more: the exporters are mostly single-threaded Python. (An exporter with `own_process` always does.)
BACKGROUND = ("coreml", "executorch:fp32")


def cores_available() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Background:
    """The exports `convert` runs in other processes: (backend, precision) → its job, or the error that kept it
    from starting (raised when that export's result is asked for)."""

    def __init__(self):
        self.jobs: dict[tuple[str, str], ChildJob | Exception] = {}

    def __contains__(self, export: tuple[str, str]) -> bool:
        return export in self.jobs

    def start(self, exports: Sequence[tuple], baked_for: Callable[[str], Mapping], calib: Mapping, stage: Path,
              verbose: bool, exits: ExitStack, say: Callable[[str], None]) -> None:
        """Start, before this process exports the rest, every precision of an exporter with `own_process` and,
        with two cores or more and more than one export, those in BACKGROUND. `exports`: (exporter, precision)
        pairs; each exporter writes into `stage / its name`; every job is cancelled when `exits` closes."""
        spare_core = cores_available() >= 2 and len(exports) > 1
        precisions: dict = {}
        for be, precision in exports:
            precisions.setdefault(be, []).append(precision)
        for be, mine in precisions.items():
            away = mine if be.own_process else [
                p for p in mine if spare_core and (be.name in BACKGROUND or f"{be.name}:{p}" in BACKGROUND)]
            if not away:
                continue
            say(f"{be.name} {', '.join(away)}: converting in a separate process meanwhile")
            try:
                with native_stderr_filtered():
                    baked, out = baked_for(be.bn_style), stage / be.name
                    job = (be.start(baked, away, calib, out) if be.own_process
                           else BackgroundExport.start(be, baked, away, calib, out, verbose))
                exits.callback(job.cancel)
            except Exception as e:  # reported on each of these exports
                job = e
            self.jobs.update({(be.name, p): job for p in away})

    def exported(self, backend: str, precision: str, t0: float) -> tuple[Exported, float]:
        """Wait for one export: its `Exported` and the seconds its process spent on it (else the wait since t0)."""
        job = self.jobs[backend, precision]
        if isinstance(job, Exception):
            raise job
        return job.exported(precision), job.seconds.get(precision, time.perf_counter() - t0)


class ChildJob:
    """A conversion running in a child process: `result()` waits for it once (the result is kept, an error is raised
    again on every later call), then stops the child and removes its working folder. Subclasses read the child's
    output in `_collect(exit_code)`."""

    def __init__(self, what: str, work: Path, proc: subprocess.Popen, timeout_s: float | None):
        self.what, self.work, self.proc, self.timeout_s = what, work, proc, timeout_s
        self.seconds: dict[str, float] = {}
        self._result: dict[str, Exported] | None = None
        self._error: Exception | None = None

    def result(self) -> dict[str, Exported]:
        """Wait for the child: one `Exported` per precision it exported (RuntimeError with its error otherwise)."""
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error
        try:
            try:
                code = self.proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired as e:
                raise RuntimeError(f"{self.what} timed out after {self.timeout_s} s") from e
            self._result = self._collect(code)
            return self._result
        except Exception as e:
            self._error = e
            raise
        finally:
            self.cancel()

    def _collect(self, code: int) -> dict[str, Exported]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the child (if still running) and remove its working folder."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


class BackgroundExport(ChildJob):
    """Exports of one backend at several precisions, running in a child process."""

    def __init__(self, name: str, work: Path, proc: subprocess.Popen, timeout_s: float | None):
        super().__init__(f"{name} export", work, proc, timeout_s)
        self.name = name
        self.errors: dict[str, str] = {}

    @classmethod
    def start(cls, backend, baked: Mapping[int, nn.Module], precisions: Sequence[str], calib: Mapping[int, Tensor],
              out_dir: Path, verbose: bool = False, timeout_s: float | None = 3600.0) -> BackgroundExport:
        work = worker_folder(backend.name)
        try:
            torch.save({"backend": backend, "baked": dict(baked), "precisions": list(precisions),
                        "calib": dict(calib), "out_dir": str(Path(out_dir).resolve()), "verbose": verbose},
                       work / "job.pt")
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            proc = subprocess.Popen([sys.executable, "-m", "resflex.convert.background", str(work / "job.pt")],
                                    env=env, stdin=subprocess.DEVNULL)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return cls(backend.name, work, proc, timeout_s)

    def exported(self, precision: str) -> Exported:
        """Wait for the child; the `Exported` of one precision, or RuntimeError with the child's error for it."""
        self.result()
        if precision in self.errors:
            raise RuntimeError(self.errors[precision])
        return self._result[precision]

    def _collect(self, code: int) -> dict[str, Exported]:
        out = self.work / "result.pt"
        if not out.exists():
            raise RuntimeError(f"{self.name} export process exited with code {code} and no result")
        # Full unpickling is safe here only because this run wrote the file itself, into its own worker folder
        # (mode 0700); never point it at a file from elsewhere.
        done = torch.load(out, weights_only=False)
        self.seconds, self.errors = done["seconds"], done["errors"]
        return done["exported"]


def main(job_file: str) -> int:
    exit_with_parent()
    job = torch.load(job_file, weights_only=False)  # written by the parent into its private worker folder
    result = {"exported": {}, "seconds": {}, "errors": {}}
    with converting(job["verbose"]), native_stderr_filtered():
        backend = job["backend"]
        for precision in job["precisions"]:  # one failing precision must not lose the others
            t0 = time.perf_counter()
            try:
                result["exported"][precision] = backend.export(job["baked"], precision, job["calib"],
                                                               Path(job["out_dir"]))
                result["seconds"][precision] = time.perf_counter() - t0
            except Exception as e:
                result["errors"][precision] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    torch.save(result, Path(job_file).with_name("result.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
