"""Human-readable views of a bundle (what `resflex inspect` prints)."""

from __future__ import annotations

from resflex.mobile.bundle.schema import LUT, Manifest


def format_bundle(manifest: Manifest, table: LUT) -> str:
    m = manifest.model
    lines = [f"model: {m.arch} ({m.method}, width {m.width}), {m.num_classes} classes, trained at "
             f"{m.train_resolutions}; served resolutions {manifest.resolutions}", "",
             "| artifact | backend | precision | layout | MB | resolutions | parity | on host |",
             "|---|---|---|---|---:|---|---|---|"]
    for a in manifest.artifacts:
        parity = ("all passed" if all(p.passed for p in a.parity) else "FAILED") if a.parity else "-"
        lines.append(f"| {a.file} | {a.backend.value} | {a.precision.value} | {a.layout.value} | {a.bytes / 1e6:.2f} "
                     f"| {', '.join(e.name for e in a.entries)} | {parity} | {'yes' if a.runs_on_host else 'no'} |")
    for f in manifest.failures:
        lines.append(f"\nfailure: {f.backend} {f.precision}: {f.error}")
    lines += ["", "| resolution | backend | precision | compute unit | MMACs | top-1 | MB (shared by) | latency devices |",
              "|---:|---|---|---|---:|---:|---|---|"]
    for op in table.operating_points:
        top1 = f"{100 * op.top1:.1f}" if op.top1 is not None else "-"
        scales = f" s{','.join(f'{s:g}' for s in op.stage_scales)}" if op.stage_scales else ""  # Resizable Networks
        lines.append(f"| {op.resolution}{scales} | {op.backend.value} | {op.precision.value} | {op.compute_unit} | "
                     f"{op.macs / 1e6:.1f} | {top1} | {op.artifact_bytes / 1e6:.2f} ({op.artifact_resolutions}) | "
                     f"{', '.join(op.latency) or '-'} |")
    return "\n".join(lines)
