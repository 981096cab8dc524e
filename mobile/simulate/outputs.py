"""What a simulation writes: the summary table (markdown), summary.json, summary.md and one figure per scenario."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

from ..bundle.io import output_folder
from ..plotting import IMAGE_FORMATS, SAVE_METADATA, plot_style, require_matplotlib
from .policies import largest, smallest
from .run import ScenarioResult, SimulationResult


def _fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _to_empty(m: dict) -> str:
    if m["minutes_to_empty"] is None:
        return "charging"
    return f"{m['minutes_to_empty']:.1f}" + ("" if m["emptied"] else " (proj.)")


def summary_rows(result: SimulationResult) -> list[dict]:
    """One row per scenario × policy (the table of summary.md)."""
    rows = []
    for s in result.scenarios:
        for name, run in s.runs.items():
            rows.append({"scenario": s.scenario.name, "policy": name, **run.metrics})
    return rows


def format_summary(result: SimulationResult) -> str:
    """The markdown table: one line per scenario × policy."""
    head = ("| scenario | policy | top-1 (served) | miss rate | battery left | min to empty | switches/min | "
            "mean latency ms | inference J | peak °C | main point |")
    lines = [head, "|" + "|".join(["---", "---"] + ["---:"] * 8 + ["---"]) + "|"]
    for r in summary_rows(result):
        main = next(iter(r["points_used"].items()), None)
        lines.append(
            f"| {r['scenario']} | {r['policy']} | {_fmt(r['mean_top1'], '.4f')} | "
            f"{_fmt(100 * r['miss_rate'] if r['miss_rate'] is not None else None, '.2f')} % | "
            f"{r['battery_end_pct']:.2f} % | {_to_empty(r)} | {r['switches_per_min']:.2f} | "
            f"{_fmt(r['mean_latency_ms'], '.3f')} | {r['inference_j']:.2f} | {r['peak_temp_c']:.1f} | "
            + (f"{main[0]} ({100 * main[1]:.0f} %)" if main else "–") + " |")
    return "\n".join(lines)


COLORS = {"always-largest": "#d62728", "always-smallest": "#1f77b4", "resflex": "#2ca02c",
          "one-model-per-resolution": "#ff7f0e"}
STYLES = {"always-largest": dict(lw=3.0, alpha=0.45), "always-smallest": dict(lw=3.0, alpha=0.45),
          "one-model-per-resolution": dict(lw=1.6, ls="--"), "resflex": dict(lw=1.3)}
ANDROID_STATUS = ("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN")
ZORDER = {"always-largest": 2, "always-smallest": 2, "one-model-per-resolution": 3, "resflex": 4}
MAX_PLOT_POINTS = 1200
STYLE = plot_style(font_size=10, dpi=110)


def summary_json(result: SimulationResult) -> dict:
    c = result.config
    return {
        "kind": "resflex.simulation", "schema_version": "1.0",
        "bundle": str(c.bundle), "device": result.device, "fps": c.fps, "seed": c.seed, "points_set": c.points,
        "budget_ms": result.budget_ms,
        "budget_source": "--budget-ms" if c.budget_ms else
        f"{c.phone.budget_factor} × always-largest's cool latency ({largest(result.points).label})",
        "points": [{"index": p.index, "label": p.label, "resolution": p.op.resolution,
                    "stage_scales": p.op.stage_scales, "backend": p.op.backend.value,
                    "precision": p.op.precision.value, "compute_unit": p.op.compute_unit, "unit_class": p.unit_class,
                    "top1": p.op.top1, "macs": p.op.macs, "cool_ms": p.base_ms, "latency_source": p.source,
                    "energy_mj": 1e3 * p.energy_j, "load_file_ms": p.load_file_ms, "switch_ms": p.switch_ms}
                   for p in result.points],
        "excluded": result.excluded,
        "phone": dataclasses.asdict(c.phone),
        "policy": result.policy.to_dict(),
        "scenarios": [{**{k: v for k, v in dataclasses.asdict(s.scenario).items()},
                       "minutes": s.scenario.minutes,
                       "policies": {name: run.metrics for name, run in s.runs.items()}} for s in result.scenarios],
    }


def format_markdown(result: SimulationResult, images: dict[str, list[str]]) -> str:
    c, ph = result.config, result.config.phone
    big, small = largest(result.points), smallest(result.points)
    lines = [
        "# resflex simulate", "",
        f"Bundle `{c.bundle}`, device `{result.device}`, {c.fps:g} fps, seed {c.seed}. Frame budget "
        f"**{result.budget_ms:.3f} ms** ("
        + ("--budget-ms" if c.budget_ms else f"{ph.budget_factor:g} × the cool latency of {big.label}") + "). "
        "The LUT's latencies are taken as the phone's cool, idle latencies; the phone model and every constant are "
        "documented in `resflex.mobile.simulate`.", "",
        f"always-largest runs {big.label} (top-1 {big.op.top1:.4f}, {big.base_ms:.3f} ms cool); always-smallest runs "
        f"{small.label} (top-1 {small.op.top1:.4f}, {small.base_ms:.3f} ms cool).", "",
        format_summary(result), "",
        "top-1 averages over frames served (a late result is dropped); miss rate counts late and skipped frames; "
        "minutes to empty is projected from the run's mean drain unless the battery ran out (phone off).", "",
    ]
    for s in result.scenarios:
        sc = s.scenario
        lines += [f"## {sc.name}", "", sc.description + f" — {sc.minutes:g} min, battery starts at "
                  f"{100 * sc.battery_start:g} %" + (f", battery saver below {100 * sc.power_save_below:g} %"
                                                      if sc.power_save_below is not None else "") + ".", ""]
        lines += ["| phase | min | ambient °C | load | bursts/min | burst load | burst s | base W | charger |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {p.name} | {p.minutes:g} | {p.ambient_c:g} | {p.load:g} | {p.burst_per_min:g} | "
                  f"{p.burst_load:g} | {p.burst_s:g} | {p.base_w:g} | {'on' if p.charging else 'off'} |"
                  for p in sc.phases]
        lines.append("")
        for name, run in s.runs.items():
            used = ", ".join(f"{label} {100 * share:.0f} %" for label, share in run.metrics["points_used"].items())
            lines.append(f"- {name}: {used}")
        lines.append("")
        if sc.name in images:
            lines += [f"![{sc.name}]({images[sc.name][0]})", ""]
    lines += ["## Operating points simulated", "",
              "| point | class | top-1 | cool ms | source | energy mJ | load file ms | switch ms |",
              "|---|---|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {p.label} | {p.unit_class} | {p.op.top1:.4f} | {p.base_ms:.3f} | {p.source} | "
              f"{1e3 * p.energy_j:.3f} | {p.load_file_ms:.1f} | {p.switch_ms:.3f} |"
              for p in sorted(result.points, key=lambda p: p.op.key())]
    if result.excluded:
        why = Counter(result.excluded.values()).most_common()
        lines += ["", f"Not simulated: {len(result.excluded)} points (" +
                  "; ".join(f"{n}× {w}" for w, n in why) + "); see summary.json."]
    return "\n".join(lines) + "\n"


def _bins(n: int) -> list[range]:
    size = max(1, math.ceil(n / MAX_PLOT_POINTS))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _reduce(values: list[float], bins: list[range], how) -> list[float]:
    out = []
    for b in bins:
        v = [values[i] for i in b if values[i] == values[i]]
        out.append(how(v) if v else math.nan)
    return out


def _mode(v: list[float]) -> float:
    return Counter(v).most_common(1)[0][0]


def _figure(result: SimulationResult, s: ScenarioResult):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    sc, phone, budget = s.scenario, result.config.phone, result.budget_ms
    fig = Figure(figsize=(12, 15))  # a fixed layout: constrained layout doubles the drawing time
    fig.subplots_adjust(left=0.07, right=0.74, top=0.94, bottom=0.04, hspace=0.32)
    axes = fig.subplots(6, 1, sharex=True, height_ratios=(1.1, 1.3, 0.6, 1.1, 0.9, 0.9))
    fig.suptitle(f"resflex simulate — scenario {sc.name!r}\n{sc.description}", fontsize=12, fontweight="bold")
    ax_res, ax_lat, ax_load, ax_temp, ax_bat, ax_gain = axes
    reference = s.runs["always-largest"]
    for name, run in s.runs.items():
        bins = _bins(len(run.t_min))
        t = [run.t_min[b[-1]] for b in bins]
        style = dict(color=COLORS[name], label=name, zorder=ZORDER[name], **STYLES[name])
        ax_res.step(t, _reduce(run.resolution, bins, _mode), where="post", **style)
        ax_lat.plot(t, _reduce(run.latency_ms, bins, max), **style)
        ax_temp.plot(t, _reduce(run.temp_c, bins, lambda v: v[-1]), **style)
        m = run.metrics
        end = f"{m['battery_end_pct']:.2f} %" + (f" (off at {m['minutes_to_empty']:.1f} min)" if m["emptied"] else "")
        ax_bat.plot(t, _reduce(run.battery_pct, bins, lambda v: v[-1]), **{**style, "label": f"{name}: {end}"})
        n = min(len(run.battery_pct), len(reference.battery_pct))
        gain = [run.battery_pct[i] - reference.battery_pct[i] for i in range(n)]
        ax_gain.plot([run.t_min[b[-1]] for b in _bins(n)], _reduce(gain, _bins(n), lambda v: v[-1]), **style)
    first = next(iter(s.runs.values()))
    bins = _bins(len(s.load))
    t = [first.t_min[b[-1]] if b[-1] < len(first.t_min) else (b[-1] + 1) / result.config.fps / 60 for b in bins]
    ax_load.fill_between(t, [100 * v for v in _reduce(s.load, bins, lambda v: sum(v) / len(v))], step="post",
                         color="#7f7f7f", alpha=0.5, label="background CPU load")

    resolutions = sorted({p.op.resolution for p in result.points})
    ax_res.set_yticks(resolutions)
    ax_res.set_ylim(resolutions[0] - 4, resolutions[-1] + 4)
    ax_res.set_ylabel("resolution (px)")
    ax_res.set_title("operating point chosen (most frequent per plotted step)", loc="left", fontsize=10)
    ax_res.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax_lat.axhline(budget, color="black", ls=":", lw=1.5, label=f"budget {budget:.3g} ms")
    ax_lat.set_yscale("log")
    ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_lat.set_ylabel("latency (ms, log)")
    ax_lat.set_title("latency per frame (worst in each plotted step; above the budget = deadline miss)", loc="left",
                     fontsize=10)
    ax_lat.legend(handles=ax_lat.get_lines()[-1:], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax_load.set_ylim(0, 100)
    ax_load.set_ylabel("CPU load (%)")
    ax_load.set_title("background CPU load (the same trace for every policy) and phases; green band: charger "
                      "connected", loc="left", fontsize=10)
    ax_temp.axhline(phone.throttle_start_c, color="black", ls=":", lw=1.2)
    ax_temp.set_ylabel("temperature (°C)")
    ax_temp.set_title(f"device temperature; CPU throttling above {phone.throttle_start_c:g} °C; right: Android "
                      "thermal status reported", loc="left", fontsize=10)
    lo, hi = ax_temp.get_ylim()
    hi = max(hi, phone.throttle_start_c + 2)
    ax_temp.set_ylim(lo, hi)
    right = ax_temp.twinx()
    right.set_ylim(lo, hi)
    right.grid(False)
    ticks = [(c, f"{ANDROID_STATUS[i + 1]} ({i + 1})") for i, c in enumerate(phone.android_thresholds_c)
             if lo <= c <= hi]
    right.set_yticks([c for c, _ in ticks], [label for _, label in ticks], fontsize=8)
    for c, _ in ticks:
        ax_temp.axhline(c, color="#999999", lw=0.6, ls="--")
    ax_bat.set_ylabel("battery (%)")
    ax_bat.set_title("battery level (legend: left at the end)", loc="left", fontsize=10)
    ax_bat.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    lo, hi = ax_bat.get_ylim()
    marks = {100 * result.policy.battery_low: "selector: battery low",
             100 * result.policy.battery_critical: "selector: battery critical"}
    if sc.power_save_below is not None:
        marks[100 * sc.power_save_below] = "battery saver below"
    for level, label in sorted(marks.items()):
        if lo <= level <= hi:
            ax_bat.axhline(level, color="#666666", lw=0.8, ls=":")
            ax_bat.annotate(label, (0.005, level), xycoords=("axes fraction", "data"), va="bottom", fontsize=8,
                            color="#444444")
    ax_gain.set_ylabel("Δ battery (points)")
    ax_gain.set_xlabel("time (min)")
    ax_gain.set_title("battery left minus always-largest's (percentage points; above 0 = lasts longer)", loc="left",
                      fontsize=10)
    start = 0.0
    for i, p in enumerate(sc.phases):
        end = start + p.minutes
        for ax in axes:
            if i:
                ax.axvline(start, color="#555555", lw=0.8, ls="-.")
            if p.charging:
                ax.axvspan(start, end, color="#2ca02c", alpha=0.07, lw=0)
        ax_load.annotate(p.name, ((start + end) / 2, 0.95), xycoords=("data", "axes fraction"), ha="center",
                         va="top", fontsize=9, color="#222222",
                         bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#999999", alpha=0.85))
        start = end
    ax_bat.set_xlim(0, sc.minutes)
    return fig


def write_outputs(result: SimulationResult, out: str | Path, overwrite: bool = False,
                  formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """summary.md, summary.json and a plot per scenario (each format) into `out`, written atomically."""
    matplotlib = require_matplotlib("simulate")
    formats = tuple(formats)
    if not formats or any(f not in IMAGE_FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"formats: {list(formats)}, expected distinct ones of: {', '.join(IMAGE_FORMATS)}")
    images: dict[str, list[str]] = {}
    with matplotlib.rc_context(STYLE), output_folder(out, overwrite, keep=result.config.bundle,
                                                          written_by="resflex simulate") as stage:
        for s in result.scenarios:
            fig = _figure(result, s)
            images[s.scenario.name] = []
            for fmt in formats:
                name = f"{s.scenario.name}.{fmt}"
                fig.savefig(stage / name, format=fmt, metadata=SAVE_METADATA[fmt])
                images[s.scenario.name].append(name)
        (stage / "summary.md").write_text(format_markdown(result, images))
        (stage / "summary.json").write_text(json.dumps(summary_json(result), indent=2, allow_nan=False) + "\n")
        written = sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
    return [Path(out) / name for name in written]
