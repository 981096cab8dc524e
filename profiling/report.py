"""`resflex report`: plots and a markdown summary of a bundle's lookup table — the trade-off at a glance.

Reads `lut.json` (operating points with MACs, top-1 and per-device latencies) and writes into `--out`:
`report.md` plus, in each requested format, accuracy vs MACs, latency vs resolution, int8 vs fp32 and
accuracy vs latency (the last three per device). A plot whose data are missing is skipped with a line in
`report.md` saying why. The folder is written atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle.schema import (
    COMPUTE_UNITS,
    LUT,
    MAX_INT,
    RUNTIME_BACKENDS,
    Device,
    Latency,
    Manifest,
    OperatingPoint,
    read_json_data,
)
from resflex.mobile.bundle.io import output_folder
from resflex.mobile.plotting import IMAGE_FORMATS, SAVE_METADATA, plot_style

try:  # the `report` extra
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import offset_copy
except ImportError:  # pragma: no cover - exercised only without the extra
    matplotlib = None

FORMATS = IMAGE_FORMATS
BACKEND_COLORS = {"executorch": "#1f77b4", "tflite": "#ff7f0e", "onnx": "#2ca02c", "coreml": "#d62728"}
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "dynamic_int8": "D", "int4": "v"}
LINESTYLES = ("-", "--", ":", "-.")
STYLE = plot_style(font_size=11, dpi=150, **{"axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 9})


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    bundle: str
    out: str
    device: str | None = None  # default: every device in the LUT
    formats: tuple[str, ...] = ("png", "svg")
    reference: str | None = None  # JSON file: [{"label": ..., "macs": ..., "top1": ...}, ...]
    overwrite: bool = False
    verify: bool = True  # check the artifacts' checksums when reading the bundle

    def __post_init__(self):
        if not self.formats:
            raise ValueError("formats: expected at least one of " + ", ".join(FORMATS))
        for f in self.formats:
            if f not in FORMATS:
                raise ValueError(f"format {f!r} is not supported; expected one of: {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats: {list(self.formats)} names a format twice")


@dataclasses.dataclass(frozen=True)
class ReferencePoint:
    """A model outside the bundle to compare against, e.g. an individually trained network (I-Net)."""

    label: str
    macs: float
    top1: float  # a fraction in [0, 1], like the LUT's top1


def read_reference(path: str | Path) -> list[ReferencePoint]:
    """Read and validate a reference file: a JSON list of {"label": str, "macs": number > 0, "top1": 0..1}."""
    path = Path(path)
    data = read_json_data(path, "reference file")  # SchemaError (a ValueError) on bad JSON
    if not isinstance(data, list) or not data:
        raise ValueError(f'{path}: expected a non-empty JSON list like [{{"label": "I-Net 224", "macs": 300e6, '
                         f'"top1": 0.72}}], got {type(data).__name__}')
    points = []
    for i, item in enumerate(data):
        where = f"{path}: [{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with label, macs and top1, got {type(item).__name__}")
        unknown = sorted(set(item) - {"label", "macs", "top1"})
        missing = [k for k in ("label", "macs", "top1") if k not in item]
        problems = [f"unknown field(s) {unknown}"] * bool(unknown) + [f"missing field(s) {missing}"] * bool(missing)
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))
        label, macs, top1 = item["label"], item["macs"], item["top1"]
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"{where}.label: expected a non-empty string, got {label!r}")
        if not _is_number(macs) or macs <= 0:
            raise ValueError(f"{where}.macs: expected a positive number (multiply-accumulates per image, finite, at "
                             f"most {MAX_INT}), got {_cut(macs)}")
        if not _is_number(top1) or not 0 <= top1 <= 1:
            raise ValueError(f"{where}.top1: expected a fraction in [0, 1] (like lut.json's top1), got {_cut(top1)}")
        points.append(ReferencePoint(label, float(macs), float(top1)))
    return points


def _is_number(x) -> bool:
    """A JSON number a float holds: finite, and an integer at most MAX_INT (as every schema reader requires)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return abs(x) <= MAX_INT if isinstance(x, int) else math.isfinite(x)


def _cut(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, value) points that no other point beats — cost ≤ and value ≥, one of them
    strictly — ordered by cost. Lower cost and higher value are better; identical points are all kept."""
    def beaten(i):
        c, v = points[i]
        return any(c2 <= c and v2 >= v and (c2, v2) != (c, v) for c2, v2 in points)
    return sorted((i for i in range(len(points)) if not beaten(i)), key=lambda i: (points[i][0], -points[i][1], i))


# --------------------------------------------------------------------------- the report


@dataclasses.dataclass
class _Section:
    """One plot in report.md: the files written for it, or why it was skipped."""

    title: str
    name: str | None = None
    skipped: str | None = None


def write_report(config: ReportConfig) -> list[Path]:
    """Write report.md and the plots into `config.out` (atomically); returns the files written."""
    if matplotlib is None:
        raise RuntimeError("resflex report needs matplotlib; install it with: pip install -e '.[report]'")
    opened = Bundle.open(config.bundle, verify=config.verify)
    manifest, table = opened.manifest, opened.lut
    reference = read_reference(config.reference) if config.reference else []
    devices = _select_devices(table, config.device, Path(config.bundle))
    out = Path(config.out)
    with matplotlib.rc_context(STYLE), \
            output_folder(out, config.overwrite, keep=config.bundle, written_by="resflex report") as stage:
        sections = _plots(manifest, table, devices, reference, stage, config.formats)
        (stage / "report.md").write_text(_markdown(config, manifest, table, devices, reference, sections))
        written = sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
    return [out / name for name in written]


def _select_devices(table: LUT, device: str | None, bundle: Path) -> list[str]:
    if device is None:
        return list(table.devices)
    if device not in table.devices:
        known = ", ".join(table.devices) or "none yet (run `resflex profile` first)"
        raise ValueError(f"device {device!r} is not in {bundle / 'lut.json'}; devices there: {known}")
    return [device]


def _plots(manifest, table, devices, reference, stage: Path, formats) -> list[_Section]:
    sections = []

    def save(title: str, name: str, figure_or_reason) -> None:
        if isinstance(figure_or_reason, str):
            sections.append(_Section(title, skipped=figure_or_reason))
            return
        for fmt in formats:
            figure_or_reason.savefig(stage / f"{name}.{fmt}", format=fmt, metadata=SAVE_METADATA[fmt])
        sections.append(_Section(title, name=name))

    save("Accuracy vs MACs", "accuracy_vs_macs", _accuracy_vs_macs(manifest, table, reference))
    if not devices:
        reason = "no device in lut.json yet; measure latencies with `resflex profile BUNDLE --device host` first"
        save("Latency vs resolution", "", reason)
        save("int8 vs fp32", "int8_vs_fp32", _int8_vs_fp32(manifest, table, None))
        save("Accuracy vs latency", "", reason)
    slugs = _slugs(devices)
    for device in devices:
        slug = slugs[device]
        save(f"Latency vs resolution — {device}", f"latency_vs_resolution_{slug}",
             _latency_vs_resolution(manifest, table, device))
        save(f"int8 vs fp32 — {device}", f"int8_vs_fp32_{slug}", _int8_vs_fp32(manifest, table, device))
        save(f"Accuracy vs latency — {device}", f"accuracy_vs_latency_{slug}",
             _accuracy_vs_latency(manifest, table, device))
    return sections


def _slugs(devices: list[str]) -> dict[str, str]:
    """File-name-safe, distinct names for device ids such as 'adb:R58M12345'."""
    out, used = {}, set()
    for d in devices:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", d).strip("._") or "device"
        slug, n = base, 2
        while slug in used:
            slug, n = f"{base}_{n}", n + 1
        out[d] = slug
        used.add(slug)
    return out


# --------------------------------------------------------------------------- data helpers


def _color(backend_or_runtime: str) -> str:
    backend = RUNTIME_BACKENDS.get(backend_or_runtime)
    return BACKEND_COLORS.get(backend.value if backend else backend_or_runtime, "#7f7f7f")


def _marker(precision: str) -> str:
    return PRECISION_MARKERS.get(precision, "P")


def _unit(op: OperatingPoint) -> str:
    """The compute unit where it is not the backend's CPU default, else ''."""
    return "" if op.compute_unit == COMPUTE_UNITS[op.backend][0] else op.compute_unit


def _measured(table: LUT, device: str) -> list[tuple[OperatingPoint, Latency]]:
    return [(op, lat) for op in table.operating_points for lat in op.latency.get(device, [])]


def _gflops(op: OperatingPoint, lat: Latency) -> float | None:
    """Achieved GFLOP/s: the LUT's value, else 2 · MACs / p50."""
    if lat.gflops is not None:
        return lat.gflops
    return 2 * op.macs / (lat.p50_ms * 1e6) if lat.p50_ms > 0 else None


class _Res(tuple):
    """A point's spatial configuration as a sortable bar/series key: (resolution, stage scales); prints as "64" or
    "64 s1,0.5", so stage-scale points of one resolution (Resizable Networks) stay apart."""

    def __new__(cls, op: OperatingPoint):
        return super().__new__(cls, (op.resolution, tuple(op.stage_scales or ())))

    def __str__(self) -> str:
        r, s = self
        return f"{r}" + (f" s{','.join(f'{x:g}' for x in s)}" if s else "")


def _accuracies(table: LUT) -> dict[tuple[_Res, str, str], tuple[int, float]]:
    """(resolution + stage scales, backend, precision) → (MACs, top-1) for the artifacts whose top-1 was measured."""
    acc = {}
    for op in table.operating_points:
        if op.top1 is not None:
            acc.setdefault((_Res(op), op.backend.value, op.precision.value), (op.macs, op.top1))
    return acc


def _no_top1(table: LUT) -> list[str]:
    have = {(b, p) for _, b, p in _accuracies(table)}
    return sorted({f"{op.backend.value} {op.precision.value}" for op in table.operating_points
                   if (op.backend.value, op.precision.value) not in have})


def _model_line(manifest: Manifest) -> str:
    m = manifest.model
    return f"{m.arch} ({m.method}, width {m.width:g}), {m.num_classes} classes"


def _new_figure(title: str, subtitle: str, size=(9.5, 5.5), panels: int = 1):
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    fig.suptitle(title, fontsize=14, fontweight="bold")
    if subtitle:
        axes[0].set_title(subtitle, loc="left", fontsize=10, color="#444444")
    return fig, axes


def _front_legend(series: list[Line2D], front: bool = True) -> list:
    extra = [Line2D([], [], marker="o", color="black", linestyle="none", label="filled: Pareto-optimal"),
             Line2D([], [], marker="o", markerfacecolor="none", color="black", linestyle="none",
                    label="hollow: dominated")]
    if front:
        extra.append(Line2D([], [], color="black", alpha=0.6, drawstyle="steps-post", label="Pareto front"))
    return series + extra


# --------------------------------------------------------------------------- plots


def _accuracy_vs_macs(manifest: Manifest, table: LUT, reference: list[ReferencePoint]):
    acc = _accuracies(table)
    if not acc:
        return "no operating point has a top-1 in lut.json (no artifact could run on the converting host)"
    keys = list(acc)
    front = set(pareto_front([(acc[k][0], acc[k][1]) for k in keys]))
    series = sorted({(b, p) for _, b, p in keys})
    data = next((op.top1_data for op in table.operating_points if op.top1_data), None)
    subtitle = _model_line(manifest)
    if data:
        subtitle += f" · top-1 on {data.dataset} {data.split}, {data.samples} images"
    fig, (ax,) = _new_figure("Accuracy vs compute", subtitle)
    handles = []
    for n, (backend, precision) in enumerate(series):
        # Series of one resolution share its MACs: spread them by a few points so none hides another.
        shift = offset_copy(ax.transData, fig=fig, x=(n - (len(series) - 1) / 2) * 5, y=0, units="points")
        color, marker = _color(backend), _marker(precision)
        for optimal in (True, False):
            pts = [acc[k] for i, k in enumerate(keys) if k[1:] == (backend, precision) and (i in front) == optimal]
            if pts:
                ax.scatter([m / 1e6 for m, _ in pts], [100 * t for _, t in pts], transform=shift, marker=marker, s=80,
                           facecolors=color if optimal else "white", edgecolors=color, linewidths=1.6, zorder=3)
        handles.append(Line2D([], [], marker=marker, color=color, linestyle="none", markersize=8,
                              label=f"{backend} {precision}"))
    ax.update_datalim([(m / 1e6, 100 * t) for m, t in acc.values()])  # shifted scatters do not autoscale
    ax.margins(x=0.08, y=0.08)
    ax.autoscale_view()
    fx, fy = zip(*sorted((acc[keys[i]][0] / 1e6, 100 * acc[keys[i]][1]) for i in front))
    ax.step(fx, fy, where="post", color="black", alpha=0.6, linewidth=1.2, zorder=2)
    for r in reference:
        ax.scatter([r.macs / 1e6], [100 * r.top1], marker="*", s=180, color="black", zorder=4)
        ax.annotate(r.label, (r.macs / 1e6, 100 * r.top1), xytext=(8, -4), textcoords="offset points", fontsize=9,
                    ha="left", va="top", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none",
                                                   alpha=0.8), zorder=5)
    if reference:
        handles.append(Line2D([], [], marker="*", color="black", linestyle="none", markersize=12, label="reference"))
    res_macs = sorted({(m, r[0]) for (r, _, _), (m, _) in acc.items() if not r[1] or min(r[1]) == max(r[1]) == 1})
    top = ax.secondary_xaxis("top")
    top.set_xticks([m / 1e6 for m, _ in res_macs], labels=[f"{r}px" for _, r in res_macs])
    top.set_xlabel("input resolution")
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(handles=_front_legend(handles), loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return fig


def _latency_vs_resolution(manifest: Manifest, table: LUT, device: str):
    rows = _measured(table, device)
    if not rows:
        return f"no latency measured on {device!r} in lut.json"
    combos = sorted({(_unit(op), lat.threads) for op, lat in rows})
    series: dict[tuple, list[tuple[OperatingPoint, Latency]]] = {}
    for op, lat in rows:
        series.setdefault((lat.runtime, op.precision.value, _unit(op), lat.threads), []).append((op, lat))
    fig, (ax,) = _new_figure(f"Latency vs input resolution — {device}", _device_line(table.devices[device]))
    for n, ((runtime, precision, unit, threads), pts) in enumerate(sorted(series.items())):
        # Spread the series by a few points so that their p90 bars do not overlap.
        shift = offset_copy(ax.transData, fig=fig, x=(n - (len(series) - 1) / 2) * 3, y=0, units="points")
        pts.sort(key=lambda p: p[0].resolution)
        x = [op.resolution for op, _ in pts]
        p50 = [lat.p50_ms for _, lat in pts]
        up = [max(lat.p90_ms - lat.p50_ms, 0) for _, lat in pts]
        label = f"{runtime} {precision}" + (f" · {unit}" if unit else "") + f" · {threads} thread{'s' * (threads > 1)}"
        ax.errorbar(x, p50, yerr=[[0] * len(up), up], color=_color(runtime), marker=_marker(precision), markersize=7,
                    linestyle=LINESTYLES[combos.index((unit, threads)) % len(LINESTYLES)], capsize=3, label=label,
                    transform=shift)
    ax.update_datalim([(op.resolution, lat.p90_ms) for op, lat in rows] + [(op.resolution, 0) for op, _ in rows])
    ax.autoscale_view()
    ax.set_xticks(sorted({op.resolution for op, _ in rows}))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("input resolution (px)")
    ax.set_ylabel("latency p50 (ms); bar up to p90")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return fig


def _int8_vs_fp32(manifest: Manifest, table: LUT, device: str | None):
    """Per resolution: p50 latency (on `device`, at the most threads measured) and top-1, fp32 beside int8."""
    acc = _accuracies(table)
    acc_pairs = sorted({(b, r) for r, b, p in acc if p == "fp32" and (r, b, "int8") in acc})
    lat_pairs: dict[tuple[str, str, int], dict[int, dict[str, float]]] = {}
    if device is not None:
        p50: dict[tuple[str, str, int], dict[int, dict[str, float]]] = {}
        for op, lat in _measured(table, device):
            if op.precision.value in ("fp32", "int8"):
                p50.setdefault((lat.runtime, _unit(op), lat.threads), {}).setdefault(
                    _Res(op), {})[op.precision.value] = lat.p50_ms
        paired = {k: {r: v for r, v in sorted(d.items()) if len(v) == 2} for k, d in p50.items()}
        most: dict[tuple[str, str], int] = {}
        for (runtime, unit, threads), by_res in paired.items():
            if by_res:
                most[(runtime, unit)] = max(most.get((runtime, unit), 0), threads)
        lat_pairs = {k: v for k, v in sorted(paired.items()) if v and most[k[:2]] == k[2]}
    if device is not None and not lat_pairs:
        return f"no operating point was measured on {device!r} in both fp32 and int8"
    if not lat_pairs and not acc_pairs:
        return "no artifact has both fp32 and int8 with a measured top-1"
    panels = (["latency"] if lat_pairs else []) + (["accuracy"] if acc_pairs else [])
    title = f"int8 vs fp32 — {device}" if device else "int8 vs fp32 (no latency measured yet)"
    fig, axes = _new_figure(title, "", size=(6.5 * len(panels) + 1, 6), panels=len(panels))
    for ax, panel in zip(axes, panels):
        if panel == "latency":
            groups = lat_pairs
            labels = {k: k[0] + (f" · {k[1]}" if k[1] else "") + f" · {k[2]} thr" for k in groups}
            _paired_bars(ax, groups, fmt=lambda a, b: f"×{a / b:.2f}" if b > 0 else "")
            ax.set_ylabel("latency p50 (ms)")
            ax.set_title("latency (most threads measured); label: fp32/int8 speed-up", fontsize=10)
        else:
            groups = {}
            for b, r in acc_pairs:
                groups.setdefault((b,), {})[r] = {p: 100 * acc[(r, b, p)][1] for p in ("fp32", "int8")}
            labels = {k: k[0] for k in groups}
            _paired_bars(ax, groups, fmt=lambda a, b: f"{b - a:+.1f}")
            ax.set_ylabel("top-1 accuracy (%)")
            ax.set_title(f"{_model_line(manifest)}; label: int8 − fp32 (points)", fontsize=10)
        ax.set_xlabel("input resolution (px)")
        handles = [Patch(facecolor=_color(k[0]), edgecolor="black", label=label) for k, label in labels.items()]
        handles += [Patch(facecolor="white", edgecolor="black", label="fp32"),
                    Patch(facecolor="white", edgecolor="black", hatch="//", label="int8")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(len(handles), 4))
    return fig


def _paired_bars(ax, groups: dict, fmt) -> None:
    """Bars grouped by resolution: per series an fp32 and an int8 bar, the int8 one labelled fmt(fp32, int8)."""
    resolutions = sorted({r for d in groups.values() for r in d})
    n = len(groups) * 2
    width = 0.8 / n
    for s, (key, by_res) in enumerate(groups.items()):
        for j, precision in enumerate(("fp32", "int8")):
            xs = [resolutions.index(r) - 0.4 + width * (2 * s + j + 0.5) for r in by_res]
            ys = [v[precision] for v in by_res.values()]
            bars = ax.bar(xs, ys, width, color=_color(key[0]), alpha=1.0 if precision == "fp32" else 0.55,
                          hatch="//" if precision == "int8" else None, edgecolor="black", linewidth=0.6)
            if precision == "int8":
                ax.bar_label(bars, [fmt(v["fp32"], v["int8"]) for v in by_res.values()], fontsize=9, padding=2)
    ax.set_xticks(range(len(resolutions)), [str(r) for r in resolutions])
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.12)


def _accuracy_vs_latency(manifest: Manifest, table: LUT, device: str):
    rows = [(op, lat) for op, lat in _measured(table, device) if op.top1 is not None]
    if not rows:
        missing = "no latency measured" if not _measured(table, device) else "no measured operating point has a top-1"
        return f"{missing} on {device!r} in lut.json"
    front = set(pareto_front([(lat.p50_ms, op.top1) for op, lat in rows]))
    threads = {lat.threads for _, lat in rows}
    fig, (ax,) = _new_figure(f"Accuracy vs latency — {device}", _model_line(manifest) + " · the selector's trade-off")
    handles = []
    for runtime, precision in sorted({(lat.runtime, op.precision.value) for op, lat in rows}):
        color, marker = _color(runtime), _marker(precision)
        for optimal in (True, False):
            pts = [(lat.p50_ms, 100 * op.top1) for i, (op, lat) in enumerate(rows)
                   if (lat.runtime, op.precision.value) == (runtime, precision) and (i in front) == optimal]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, s=80, facecolors=color if optimal else "white", edgecolors=color,
                           linewidths=1.6, zorder=3)
        handles.append(Line2D([], [], marker=marker, color=color, linestyle="none", markersize=8,
                              label=f"{runtime} {precision}"))
    ordered = sorted(front, key=lambda i: rows[i][1].p50_ms)
    ax.step([rows[i][1].p50_ms for i in ordered], [100 * rows[i][0].top1 for i in ordered], where="post",
            color="black", alpha=0.6, linewidth=1.2, zorder=2)
    for i in ordered:
        op, lat = rows[i]
        text = f"{op.resolution}px" + (f" {_unit(op)}" if _unit(op) else "")
        text += f", {lat.threads} thr" if len(threads) > 1 else ""
        # Up and left of a Pareto point lies no other point (it would dominate it): room for the label.
        ax.annotate(text, (lat.p50_ms, 100 * op.top1), xytext=(-5, 5), textcoords="offset points", ha="right",
                    va="bottom", fontsize=9)
    ax.margins(y=0.1)
    ax.set_xlim(left=0)
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    legend = _front_legend(handles)
    if len(threads) > 1:
        legend.append(Line2D([], [], linestyle="none", label="labels: resolution, threads"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return fig


def _device_line(device: Device) -> str:
    facts = device.facts
    keys = [k for k in ("manufacturer", "model", "soc_model", "cpu", "cores_logical", "cores", "os") if facts.get(k)]
    text = " · ".join(f"{k}: {facts[k][:40]}" for k in keys[:3])
    if device.gemm_peak_gflops:
        text += (" · " if text else "") + f"fp32 GEMM peak {device.gemm_peak_gflops:.1f} GFLOP/s"
    return text


# --------------------------------------------------------------------------- markdown


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _num(value, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _table(header: list[str], rows: list[list], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _markdown(config: ReportConfig, manifest: Manifest, table: LUT, devices: list[str],
              reference: list[ReferencePoint], sections: list[_Section]) -> str:
    image = next(f for f in ("png", "svg", "pdf") if f in config.formats)
    data = next((op.top1_data for op in table.operating_points if op.top1_data), None)
    lines = [f"# resflex report — {manifest.model.arch}", "",
             f"Bundle `{config.bundle}`: {_model_line(manifest)}; resolutions "
             f"{', '.join(map(str, manifest.resolutions))}; {len(table.operating_points)} operating points; "
             f"devices: {', '.join(devices) or 'none measured yet'}.",
             "Top-1 is measured on each artifact in its own runtime"
             + (f" ({data.dataset} {data.split}, {data.samples} images)." if data else "."), ""]
    missing = _no_top1(table)
    if missing:
        lines += [f"No top-1 for {', '.join(missing)} (the artifact cannot run on the converting host): left out of "
                  "the accuracy plots.", ""]
    lines += ["## Plots", ""]
    for s in sections:
        lines.append(f"### {s.title}")
        if s.skipped:
            lines += ["", f"*Skipped: {s.skipped}.*", ""]
            continue
        others = ", ".join(f"[{f}]({s.name}.{f})" for f in config.formats if f != image)
        lines += ["", f"![{s.title}]({s.name}.{image})", ""] + ([f"Also as {others}.", ""] if others else [])
    lines += ["## Operating points", ""]
    lines += _table(["resolution", "backend", "precision", "compute unit", "MMACs", "params (M)", "top-1 %",
                     "MB (shared by K resolutions)"],
                    [[op.resolution, op.backend.value, op.precision.value, op.compute_unit, f"{op.macs / 1e6:.2f}",
                      f"{op.params / 1e6:.3f}", _num(None if op.top1 is None else 100 * op.top1, ".1f"),
                      f"{op.artifact_bytes / 1e6:.2f} (shared by {op.artifact_resolutions})"]
                     for op in table.operating_points], right={0, 4, 5, 6})
    if reference:
        lines += ["", f"Reference models from `{config.reference}` (stars in the accuracy plot):", ""]
        lines += _table(["model", "MMACs", "top-1 %"], [[r.label, f"{r.macs / 1e6:.2f}", f"{100 * r.top1:.1f}"]
                                                         for r in reference], right={1, 2})
    for device in devices:
        lines += ["", *_device_markdown(table, device)]
    return "\n".join(lines) + "\n"


def _device_markdown(table: LUT, device: str) -> list[str]:
    dev = table.devices[device]
    lines = [f"## Device `{device}`", ""]
    lines += [f"- {k}: {_cell(v)}" for k, v in dev.facts.items()]
    peak = dev.gemm_peak_gflops
    lines += [f"- fp32 GEMM peak: {peak:.1f} GFLOP/s" if peak else "- fp32 GEMM peak: not measured", ""]
    rows = _measured(table, device)
    if not rows:
        lines += ["No latency measured on this device yet.", ""]
    else:
        lines += ["One row per operating point and measurement (runtime × threads).", ""]
        energy = any(lat.energy_mj is not None for _, lat in rows)
        header = ["resolution", "backend", "precision", "compute unit", "runtime", "threads", "MMACs", "top-1 %",
                  "p50 ms", "p90 ms", "p99 ms", "peak memory MB", "GFLOP/s", "% of GEMM peak"]
        header += ["energy mJ"] * energy + ["MB (shared by K)"]
        body = []
        for op, lat in rows:
            gf = _gflops(op, lat)
            row = [op.resolution, op.backend.value, op.precision.value, op.compute_unit, lat.runtime, lat.threads,
                   f"{op.macs / 1e6:.2f}", _num(None if op.top1 is None else 100 * op.top1, ".1f"),
                   f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", _num(lat.peak_memory_mb, ".1f"),
                   _num(gf), _num(100 * gf / peak if peak and gf is not None else None, ".1f")]
            row += [_num(lat.energy_mj, ".2f")] * energy + [
                f"{op.artifact_bytes / 1e6:.2f} (shared by {op.artifact_resolutions})"]
            body.append(row)
        lines += [*_table(header, body, right={0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}), ""]
    if dev.switch_costs:
        lines += ["### Switch cost", "", "Serving another resolution: switch inside the loaded bundle vs load a "
                  "separate single-resolution model file.", ""]
        lines += _table(["runtime", "precision", "switch, method loaded (ms)", "switch, first use (ms)",
                         "load separate file (ms)", "load ÷ switch overhead (beyond the inference)"],
                        [[s.runtime, s.precision.value, f"{s.switch_loaded_ms:.3f}", f"{s.switch_first_ms:.3f}",
                          f"{s.load_file_ms:.3f}", f"{s.overheads()[2]:.0f}×" if s.overheads() else "-"]
                         for s in dev.switch_costs], right={2, 3, 4, 5})
        lines.append("")
    if dev.latency_models:
        lines += ["### Latency model", "", "latency ≈ a + b · GMACs, fitted per runtime, precision, unit and threads.",
                  ""]
        lines += _table(["runtime", "precision", "compute unit", "threads", "a (ms)", "b (ms/GMAC)",
                         "mean abs. rel. error", "points"],
                        [[m.runtime, m.precision.value, m.compute_unit, m.threads, f"{m.intercept_ms:.3f}",
                          f"{m.ms_per_gmac:.3f}", f"{100 * m.mean_abs_rel_error:.1f}%", m.points]
                         for m in dev.latency_models], right={3, 4, 5, 6, 7})
        lines.append("")
    return lines
