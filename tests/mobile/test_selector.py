"""The runtime selector: golden vectors, a plain transcription of its docstring, properties, policy, CLI."""

import importlib.util
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resflex.mobile.bundle import schema
from resflex.cli.main import main
from resflex.mobile.selector import POLICY_FILE, DeviceState, Policy, Selector, load_policy

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOLDEN_PATH = Path(__file__).resolve().parents[1] / "golden" / "selector_golden.json"
GOLDEN_SCRIPT = GOLDEN_PATH.with_suffix(".py")  # the generator lives beside its output, outside the package
_spec = importlib.util.spec_from_file_location("selector_golden", GOLDEN_SCRIPT)
G = sys.modules["selector_golden"] = importlib.util.module_from_spec(_spec)  # registered: it defines dataclasses
_spec.loader.exec_module(G)


# --------------------------------------------------------------------------- the docstring, transcribed


class Reference:
    """resflex.mobile.selector's module docstring transcribed literally with plain loops and sets (what the
    Kotlin and Swift ports implement); the optimised Selector must make the very same decisions."""

    def __init__(self, table: schema.LUT, device: str, policy: Policy):
        self.p = p = policy
        dev = table.devices.get(device)
        rows = []
        for i, op in enumerate(table.operating_points):
            best = None
            for e in op.latency.get(device, []):
                if (p.runtime is not None and e.runtime != p.runtime) or \
                        (p.threads is not None and e.threads != p.threads):
                    continue
                if not (math.isfinite(e.p50_ms) and e.p50_ms > 0):
                    continue
                if best is None or e.p50_ms < best.p50_ms or (e.p50_ms == best.p50_ms and (
                        e.threads < best.threads or (e.threads == best.threads and e.runtime < best.runtime))):
                    best = e
            emj = None
            if best is not None:
                base, source = best.p50_ms, "measured"
                if best.energy_mj is not None and math.isfinite(best.energy_mj) and best.energy_mj >= 0:
                    emj = best.energy_mj
            else:
                model = None
                for m in dev.latency_models if dev else []:
                    if m.precision != op.precision or m.compute_unit != op.compute_unit:
                        continue
                    if (p.runtime is not None and m.runtime != p.runtime) or \
                            (p.threads is not None and m.threads != p.threads):
                        continue
                    ms = m.intercept_ms + m.ms_per_gmac * (op.macs / 1e9)
                    if math.isfinite(ms) and ms > 0 and (model is None or (ms, m.threads, m.runtime) < model):
                        model = (ms, m.threads, m.runtime)
                if model is not None:
                    base, source = model[0], "model"
                else:
                    base, source = max(op.macs, 1) / (p.fallback_gmacs_per_s * 1e6), "macs"
            top1 = op.top1 if op.top1 is not None and math.isfinite(op.top1) else 0.0
            cls = "accelerator" if op.compute_unit in p.accelerator_units else "cpu"
            rows.append({"i": i, "cls": cls, "base": base, "source": source, "emj": emj, "top1": top1,
                         "macs": op.macs, "key": (op.resolution, op.backend.value, op.precision.value,
                                                  op.compute_unit, tuple(op.stage_scales or ()))})
        use_mj = all(r["emj"] is not None for r in rows)
        for r in rows:
            r["energy"] = r["emj"] if use_mj else float(max(r["macs"], 1))
        for rank, r in enumerate(sorted(rows, key=lambda r: r["key"])):
            r["rank"] = rank

        def dominated(a):
            for b in rows:
                if b is a or b["cls"] != a["cls"]:
                    continue
                if b["top1"] >= a["top1"] and b["base"] <= a["base"] and (not use_mj or b["energy"] <= a["energy"]):
                    if b["top1"] > a["top1"] or b["base"] < a["base"] or (use_mj and b["energy"] < a["energy"]):
                        return True
            return False

        self.cands = [r for r in rows if not dominated(r)]
        self.slow = {"cpu": 1.0, "accelerator": 1.0}
        self.cur, self.calm, self.misses, self.last, self.wanted = None, 0, 0, None, None
        self.required, self.window = p.hysteresis_frames, 0

    def sanitize(self, s):
        p, bad = self.p, []
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
        scales = {"normalized": [0, 1, 2, 3], "android": [0, 1, 2, 3, 3, 3, 3], "ios": [0, 1, 2, 3]}
        scale = scales.get(s.thermal_scale) if isinstance(s.thermal_scale, str) else None
        if scale is None:
            bad.append("bad_sensor:thermal_scale")
            level = p.unknown_thermal
        elif num(s.thermal) and math.isfinite(s.thermal) and s.thermal >= 0 and s.thermal == math.floor(s.thermal) \
                and s.thermal <= len(scale) - 1:
            level = scale[int(s.thermal)]
        else:
            bad.append("bad_sensor:thermal")
            level = 3 if num(s.thermal) and s.thermal > len(scale) - 1 else p.unknown_thermal
        battery = s.battery
        if not (num(battery) and math.isfinite(battery) and 0 <= battery <= 1):
            bad.append("bad_sensor:battery")
            battery = p.battery_low
        charging = s.charging
        if not isinstance(charging, bool):
            bad.append("bad_sensor:charging")
            charging = False
        power_save = s.power_save
        if not isinstance(power_save, bool):
            bad.append("bad_sensor:power_save")
            power_save = True
        load = s.cpu_load
        if not (num(load) and math.isfinite(load) and 0 <= load <= 1):
            bad.append("bad_sensor:cpu_load")
            load = 1.0
        return level, battery, charging, power_save, load, bad

    def pick(self, cands, slack):
        if not cands:
            return None
        if slack <= 0:
            return min(cands, key=lambda c: (-c["top1"], c["pred"], c["energy"], c["rank"]))
        best = max(c["top1"] for c in cands)
        return min((c for c in cands if c["top1"] >= best - slack),
                   key=lambda c: (c["energy"], -c["top1"], c["pred"], c["rank"]))

    def choose(self, s):
        p = self.p
        level, battery, charging, power_save, load, bad = self.sanitize(s)
        budget = p.latency_budget_ms * p.thermal_budget[level]
        slack, battery_code = 0.0, None
        if not charging and battery <= p.battery_critical:
            budget, slack = budget * p.battery_critical_budget, p.energy_slack_critical
            battery_code = "battery_critical"
        elif not charging and battery <= p.battery_low:
            budget, slack, battery_code = budget * p.battery_low_budget, p.energy_slack_low, "battery_low"
        if power_save:
            budget = budget * p.power_save_budget
            slack = max(slack, p.energy_slack_power_save)
        model_factor = {"cpu": p.thermal_cpu_factor[level] / (1.0 - load * p.cpu_load_k), "accelerator": 1.0}
        factor = {"cpu": model_factor["cpu"] * self.slow["cpu"], "accelerator": self.slow["accelerator"]}
        for c in self.cands:
            c["pred"] = c["base"] * factor[c["cls"]]
        fits = lambda c, limit: c["pred"] <= limit and c["top1"] >= p.min_top1  # noqa: E731
        fit = [c for c in self.cands if fits(c, budget)]
        target = self.pick(fit, slack)
        fastest = min(self.cands, key=lambda c: (c["pred"], -c["top1"], c["energy"], c["rank"]))
        cur = self.cur
        margin = budget * (1.0 - p.hysteresis_margin)
        if cur is None:
            chosen, action = (target, "initial") if target else (fastest, "none_fit_fallback_fastest")
            self.calm = 0
        elif not fits(cur, budget):
            if target:
                chosen, action = target, "step_down_no_fit"
            elif fastest["pred"] < cur["pred"] * (1.0 - p.hysteresis_margin):
                chosen, action = fastest, "none_fit_fallback_fastest"
            else:
                chosen, action = cur, "none_fit_hold"
            self.calm = 0
        elif self.misses >= p.miss_frames:
            faster = self.pick([c for c in fit if c["pred"] < cur["pred"] * (1.0 - p.hysteresis_margin)], slack)
            chosen, action = (faster, "deadline_miss_step_down") if faster else (cur, "deadline_miss_hold")
            self.calm, self.misses = 0, 0
        else:
            up = self.pick([c for c in self.cands if fits(c, margin)], slack)
            chosen, action = cur, "hold"
            if up is not None and up is not cur and self.pick([up, cur], slack) is up:
                frame_ms = self.last if self.last is not None else cur["pred"]
                self.calm = 0 if frame_ms > margin else (self.calm + 1 if up is self.wanted else 1)
                self.wanted = up
                if self.calm >= self.required:
                    chosen, action = up, "step_up"
                else:
                    action = "hold_hysteresis"
            else:
                self.calm = 0
        if chosen is not cur:
            self.calm, self.misses = 0, 0
        self.cur, self.last = chosen, None
        if self.window > 0:
            if action in ("step_down_no_fit", "none_fit_fallback_fastest", "deadline_miss_step_down", "step_up"):
                self.required, self.window = min(self.required * 2, p.backoff_max_frames), 0
            else:
                self.window -= 1
                if self.window == 0:
                    self.required = max(self.required // 2, p.hysteresis_frames)
        if action == "step_up":
            self.window = p.probe_window_frames
        reason = [action]
        if fits(chosen, budget):
            reason.append("fits_budget")
        else:
            reason += ["over_budget"] * (chosen["pred"] > budget) + ["below_min_top1"] * (chosen["top1"] < p.min_top1)
        reason += ["thermal_tightened"] * (p.thermal_budget[level] < 1)
        reason += ["thermal_cpu_slowdown"] * (p.thermal_cpu_factor[level] > 1)
        reason += ["cpu_load_slowdown"] * (load * p.cpu_load_k > 0)
        reason += [battery_code] * (battery_code is not None) + ["charging"] * charging + ["power_save"] * power_save
        reason += ["energy_preferred"] * (slack > 0)
        reason += ["throttle_detected"] * (max(self.slow.values()) >= p.throttle_report)
        reason += ["accelerator"] * (chosen["cls"] == "accelerator")
        reason += {"model": ["estimated_latency"], "macs": ["estimated_latency_macs"]}.get(chosen["source"], [])
        reason += bad
        return {"index": chosen["i"], "predicted_ms": chosen["pred"], "budget_ms": budget, "reason": tuple(reason),
                "model_ms": chosen["base"] * model_factor[chosen["cls"]], "unit_class": chosen["cls"]}

    def observe(self, d, measured):
        if not (isinstance(measured, (int, float)) and not isinstance(measured, bool) and math.isfinite(measured)
                and measured > 0):
            return
        p, c = self.p, d["unit_class"]
        other = "cpu" if c == "accelerator" else "accelerator"
        miss = measured > d["budget_ms"]
        ratio = min(max(measured / d["model_ms"], p.slowdown_min), p.slowdown_max)
        self.slow[c] = (1 - p.ema_alpha) * self.slow[c] + p.ema_alpha * ratio
        self.slow[other] = (1 - p.slowdown_relax) * self.slow[other] + p.slowdown_relax * 1.0
        if self.cur is not None and self.cur["i"] == d["index"]:
            self.last = measured
            explained = d["model_ms"] > d["budget_ms"] * (1.0 - p.hysteresis_margin)
            self.misses = 0 if not miss else max(self.misses + 1, p.miss_frames) if explained else self.misses + 1


# --------------------------------------------------------------------------- strategies

UNITS = (("executorch", "XNNPACK"), ("tflite", "CPU"), ("tflite", "GPU"), ("tflite", "NNAPI"),
         ("coreml", "CPU_AND_NE"), ("onnx", "CPUExecutionProvider"))
RUNTIME = {"executorch": "executorch", "tflite": "tflite", "coreml": "coreml", "onnx": "onnxruntime"}
latencies = st.one_of(st.floats(0.5, 80.0), st.sampled_from([5.0, 10.0, 20.0]))  # coarse values make ties
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers(-10, 10),
                 st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def luts(draw, device="phone"):
    combos = draw(st.lists(st.tuples(st.sampled_from((96, 128, 160, 192, 224)), st.sampled_from(UNITS),
                                     st.sampled_from(("fp32", "int8"))), min_size=1, max_size=8, unique=True))
    energy = draw(st.booleans())
    points = []
    for r, (backend, unit), precision in combos:
        entries = []
        if draw(st.integers(0, 3)):
            for threads in draw(st.lists(st.sampled_from((1, 4)), min_size=1, max_size=2, unique=True)):
                p50 = draw(latencies)
                entries.append(schema.Latency(RUNTIME[backend], threads, 10, p50, p50, p50,
                                         energy_mj=draw(st.floats(1.0, 200.0)) if energy else None))
        points.append(schema.OperatingPoint(
            r, schema.Backend(backend), schema.Precision(precision), unit, f"{backend}/m_{precision}", f"e{r}", r * r * 1000,
            1, 1, 1, top1=draw(st.one_of(st.none(), st.sampled_from([0.5, 0.6, 0.7]), st.floats(0.0, 1.0))),
            latency={device: entries} if entries else {}))
    models = [schema.LatencyModel(RUNTIME[b], schema.Precision(prec), u, draw(st.sampled_from((1, 4))),
                             draw(st.floats(-2.0, 3.0)), draw(st.floats(5.0, 400.0)), 0.1, 3)
              for _, (b, u), prec in combos if draw(st.booleans())]
    return schema.LUT(points, {device: schema.Device(latency_models=models)})


policies = st.builds(
    Policy, latency_budget_ms=st.floats(2.0, 80.0), min_top1=st.sampled_from([0.0, 0.0, 0.55, 0.65]),
    threads=st.sampled_from([None, None, 1, 4]), hysteresis_frames=st.integers(1, 6),
    hysteresis_margin=st.sampled_from([0.0, 0.1, 0.25]), slowdown_relax=st.sampled_from([0.0, 0.005, 0.05]),
    backoff_max_frames=st.just(40), miss_frames=st.integers(1, 3), probe_window_frames=st.sampled_from([1, 5, 30]))
scales = st.sampled_from([("normalized", 3), ("android", 6), ("ios", 3)])


@st.composite
def states(draw, wild=False):
    scale, top = draw(scales)
    state = DeviceState(battery=draw(st.floats(0.0, 1.0)), charging=draw(st.booleans()),
                        power_save=draw(st.booleans()), thermal=draw(st.integers(0, top)),
                        cpu_load=draw(st.floats(0.0, 1.0)), thermal_scale=scale)
    if wild:
        for field in DeviceState._fields:
            if draw(st.integers(0, 4)) == 0:
                state = state._replace(**{field: draw(junk)})
    return state


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


# --------------------------------------------------------------------------- golden vectors


def test_selector_imports_without_torch():
    code = ("import runpy, sys; import resflex.mobile.selector, resflex.cli.select; "
            f"runpy.run_path({str(GOLDEN_SCRIPT)!r}); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_golden_file_is_reemitted_byte_for_byte(tmp_path):
    fresh = G.emit_golden(tmp_path / "golden.json").read_bytes()
    assert fresh == G.emit_golden(tmp_path / "again.json").read_bytes()
    assert GOLDEN_PATH.read_bytes() == fresh, (
        f"{GOLDEN_PATH} is stale: run `python {GOLDEN_SCRIPT} {GOLDEN_PATH}` and commit it")


def test_every_golden_case_replays():
    document = json.loads(GOLDEN_PATH.read_text())
    assert document["kind"] == G.GOLDEN_KIND and len(document["cases"]) >= 20
    assert G.replay(document) == []


def test_golden_replay_catches_a_wrong_expectation():
    document = json.loads(GOLDEN_PATH.read_text())
    step = document["cases"][0]["steps"][0]
    step["expected"]["resolution"] = 96
    step["expected"]["reason"] = ["hold"]
    name = document["cases"][0]["name"]
    assert sorted(G.replay(document)) == [f"{name} step 0: reason is ['initial', 'fits_budget'], expected ['hold']",
                                          f"{name} step 0: resolution is 224, expected 96"]


def test_golden_cases_cover_what_the_ports_must_get_right():
    document = json.loads(GOLDEN_PATH.read_text())
    codes, thermal, specials, sources = set(), {}, set(), set()
    for case in document["cases"]:
        assert set(case["policy"]) == set(Policy().to_dict()), "policies are written with every field"
        for step in case["steps"]:
            codes.update(step["expected"]["reason"])
            sources.add(step["expected"]["latency_source"])
            s = step["state"]
            assert set(s) == set(G.STATE_FIELDS)
            if isinstance(s["thermal"], int) and not isinstance(s["thermal"], bool):
                thermal.setdefault(s["thermal_scale"], set()).add(s["thermal"])
            specials.update(v for v in (*s.values(), step["observed_ms"]) if v in ("NaN", "Infinity", "-Infinity"))
    assert thermal["android"] >= set(range(7)) and thermal["ios"] >= set(range(4))
    assert thermal["normalized"] >= set(range(4))
    assert specials == {"NaN", "Infinity", "-Infinity"}
    assert sources == {"measured", "model", "macs"}
    assert codes >= {
        "initial", "hold", "hold_hysteresis", "step_up", "step_down_no_fit", "deadline_miss_step_down",
        "none_fit_fallback_fastest", "none_fit_hold", "fits_budget", "over_budget", "below_min_top1",
        "thermal_tightened", "thermal_cpu_slowdown", "cpu_load_slowdown", "battery_low", "battery_critical",
        "charging", "power_save", "energy_preferred", "throttle_detected", "accelerator", "estimated_latency",
        "estimated_latency_macs", *(f"bad_sensor:{f}" for f in
                                    ("thermal_scale", "thermal", "battery", "charging", "power_save", "cpu_load"))}


# --------------------------------------------------------------------------- properties


timings = st.one_of(st.floats(0.3, 2.5).map(lambda m: ("times_predicted", m)), junk.map(lambda v: ("raw", v)))


@PROPERTY
@given(table=luts(), policy=policies, device=st.sampled_from(["phone", "phone", "unprofiled"]),
       pool=st.lists(states(wild=True), min_size=1, max_size=3), data=st.data())
def test_decisions_follow_the_docstring_are_lut_points_and_never_raise(table, policy, device, pool, data):
    """Sensor states from a small pool (so steady stretches happen), each measured latency a multiple of the
    prediction (misses, calm frames, throttling) or junk: the Selector and the plain transcription agree."""
    sel, ref = Selector(table, device, policy), Reference(table, device, policy)
    assert sorted(sel.candidates) == sorted(r["i"] for r in ref.cands)
    steps = data.draw(st.lists(st.tuples(st.sampled_from(pool), timings), min_size=1, max_size=40))
    for state, (kind, value) in steps:
        d, r = sel.choose(state), ref.choose(state)
        assert d.point is table.operating_points[d.index] and d.index in sel.candidates
        assert (d.index, d.reason, d.unit_class) == (r["index"], r["reason"], r["unit_class"])
        assert (d.predicted_ms, d.budget_ms, d.model_ms) == (r["predicted_ms"], r["budget_ms"], r["model_ms"])
        observed = d.predicted_ms * value if kind == "times_predicted" else value
        assert sel.observe(d, observed) == (isinstance(observed, (int, float)) and not isinstance(observed, bool)
                                            and math.isfinite(observed) and observed > 0)
        ref.observe(r, observed)


def random_table(rng: random.Random, device: str = "phone") -> schema.LUT:
    """A random small LUT whose latencies sit on a coarse grid (near-ties and close calls are common)."""
    combos = set()
    for _ in range(rng.randint(1, 10)):
        combos.add((rng.choice((96, 128, 160, 192, 224)), rng.choice(UNITS), rng.choice(("fp32", "int8"))))
    energy, points, models = rng.random() < 0.5, [], []
    for r, (backend, unit), precision in sorted(combos):
        entries = []
        if rng.random() < 0.8:
            for threads in rng.sample((1, 4), rng.randint(1, 2)):
                p50 = rng.choice((5.0, 10.0, 20.0)) * (1 + 0.05 * rng.randint(0, 6))
                entries.append(schema.Latency(RUNTIME[backend], threads, 10, p50, p50, p50,
                                         energy_mj=rng.choice((20.0, 50.0, rng.uniform(1, 200))) if energy else None))
        points.append(schema.OperatingPoint(
            r, schema.Backend(backend), schema.Precision(precision), unit, f"{backend}/m_{precision}", f"e{r}", r * r * 1000,
            1, 1, 1, top1=rng.choice((None, 0.5, 0.6, 0.7, round(rng.random(), 2))),
            latency={device: entries} if entries else {}))
        if rng.random() < 0.5:
            models.append(schema.LatencyModel(RUNTIME[backend], schema.Precision(precision), unit, rng.choice((1, 4)),
                                         rng.uniform(-2, 3), rng.uniform(5, 400), 0.1, 3))
    return schema.LUT(points, {device: schema.Device(latency_models=models)})


def random_state(rng: random.Random) -> DeviceState:
    scale, top = rng.choice((("normalized", 3), ("android", 6), ("ios", 3)))
    s = DeviceState(battery=rng.choice((0.05, 0.15, 0.5, 1.0, rng.random())), charging=rng.random() < 0.3,
                    power_save=rng.random() < 0.2, thermal=rng.randint(0, top),
                    cpu_load=rng.choice((0.0, 0.0, 0.5, rng.random())), thermal_scale=scale)
    if rng.random() < 0.1:
        s = s._replace(**{rng.choice(DeviceState._fields): rng.choice((None, math.nan, -1, 9, "x", math.inf))})
    return s


def test_decisions_follow_the_docstring_over_long_random_runs():
    """300 random tables × 80 frames: steady stretches, calm frames, misses, throttling, back-off and junk
    timings; the Selector and the plain transcription of its docstring agree on every decision."""
    actions, backed_off = set(), False
    for seed in range(300):
        rng = random.Random(seed)
        table, device = random_table(rng), rng.choice(("phone", "phone", "unprofiled"))
        policy = Policy(latency_budget_ms=rng.uniform(3.0, 60.0), min_top1=rng.choice((0.0, 0.0, 0.55)),
                        threads=rng.choice((None, None, 1)), hysteresis_frames=rng.randint(1, 5),
                        hysteresis_margin=rng.choice((0.0, 0.1, 0.25)), slowdown_relax=rng.choice((0.0, 0.005, 0.05)),
                        backoff_max_frames=rng.choice((8, 40)), miss_frames=rng.randint(1, 3),
                        probe_window_frames=rng.choice((1, 5, 40)))
        sel, ref = Selector(table, device, policy), Reference(table, device, policy)
        state, slow = random_state(rng), {"cpu": rng.uniform(0.8, 2.0), "accelerator": rng.uniform(0.8, 2.0)}
        for frame in range(80):
            if rng.random() < 0.08:
                state = random_state(rng)
            d, r = sel.choose(state), ref.choose(state)
            assert (d.index, d.reason) == (r["index"], r["reason"]), (seed, frame)
            assert (d.predicted_ms, d.budget_ms, d.model_ms) == (r["predicted_ms"], r["budget_ms"], r["model_ms"])
            actions.add(d.reason[0])
            backed_off |= ref.required > policy.hysteresis_frames
            measured = d.model_ms * slow[d.unit_class] * rng.uniform(0.93, 1.07)
            if rng.random() < 0.05:
                measured = rng.choice((math.nan, -1.0, 0.0, None, "12", d.budget_ms * 1.5))
            sel.observe(d, measured)
            ref.observe(r, measured)
    assert backed_off and actions == {"initial", "hold", "hold_hysteresis", "step_up", "step_down_no_fit",
                                      "deadline_miss_step_down", "deadline_miss_hold", "none_fit_fallback_fastest",
                                      "none_fit_hold"}


def _not_costlier(sel_b, state_b, d_a, d_b) -> None:
    """"More expensive" = strictly more predicted latency (both priced in the worse state B, with B's sensors)
    AND strictly more energy (energy_mj, or MACs where the LUT has no energy). B must never pick that."""
    budget, pred = sel_b.predict(state_b)
    assert budget == d_b.budget_ms <= d_a.budget_ms
    assert not (pred[d_b.index] > pred[d_a.index] and sel_b.energy[d_b.index] > sel_b.energy[d_a.index]), (
        d_a.reason, d_b.reason)


@PROPERTY
@given(table=luts(), policy=policies, state=states(), batteries=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)))
def test_lower_battery_never_picks_a_more_expensive_point(table, policy, state, batteries):
    high, low = max(batteries), min(batteries)
    a, b = state._replace(battery=high, charging=False), state._replace(battery=low, charging=False)
    sel_b = Selector(table, "phone", policy)
    d_a, d_b = Selector(table, "phone", policy).choose(a), sel_b.choose(b)
    _not_costlier(sel_b, b, d_a, d_b)


@PROPERTY
@given(table=luts(), policy=policies, state=states(), levels=st.tuples(st.integers(0, 6), st.integers(0, 6)))
def test_hotter_phone_never_picks_a_more_expensive_point(table, policy, state, levels):
    top = 6 if state.thermal_scale == "android" else 3
    cool, hot = min(levels) % (top + 1), max(levels) % (top + 1)
    cool, hot = min(cool, hot), max(cool, hot)
    a, b = state._replace(thermal=cool), state._replace(thermal=hot)
    sel_b = Selector(table, "phone", policy)
    d_a, d_b = Selector(table, "phone", policy).choose(a), sel_b.choose(b)
    _not_costlier(sel_b, b, d_a, d_b)
    if "energy_preferred" not in d_b.reason:  # accuracy mode: never slower, priced in the hot state
        _, pred = sel_b.predict(b)
        assert pred[d_b.index] <= pred[d_a.index]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=luts(), budget=st.floats(4.0, 60.0), state=states(), seed=st.integers(0, 2**32 - 1),
       factors=st.tuples(st.floats(0.7, 2.5), st.floats(0.7, 2.5)), jitter=st.floats(0.0, 0.04))
def test_switch_rate_stays_bounded_under_jittered_timings(table, budget, state, seed, factors, jitter):
    """A steady phone whose real speed differs from the LUT by a factor per class, timings jittered by less
    than half the hysteresis margin: after a 200-frame warm-up, at most one switch per 4·N = 20 frames
    (worst cases seen on random tables: one per 28 frames, when nothing really fits and the work moves between
    a CPU and a GPU point whose unobserved slowdown has relaxed)."""
    policy = Policy(latency_budget_ms=budget)
    sel, rng = Selector(table, "phone", policy), random.Random(seed)
    counts = []
    for _ in range(600):
        d = sel.choose(state)
        counts.append(sel.switches)
        true = d.model_ms * (factors[0] if d.unit_class == "cpu" else factors[1])
        sel.observe(d, true * (1 + rng.uniform(-jitter, jitter)))
    assert counts[-1] - counts[200] <= 400 // (4 * policy.hysteresis_frames)


# --------------------------------------------------------------------------- rules, one at a time


def state(**fields) -> DeviceState:
    return DeviceState(**{"battery": 0.8, **fields})


def test_pareto_filter_is_per_class_and_uses_energy_only_when_measured():
    phone = G.phone_lut()
    sel = Selector(phone, "phone", Policy())
    pts = phone.operating_points
    kept = {(pts[i].resolution, pts[i].precision.value, pts[i].compute_unit) for i in sel.candidates}
    # CPU class: every int8 point, and fp32 only at 224 px (top-1 0.72, the best); fp32 192/160/128 lose to
    # int8 224/192/160 (more accurate and faster). The GPU points only compete among themselves: all kept.
    assert kept == {(224, "fp32", "XNNPACK"), *((r, "int8", "XNNPACK") for r in (224, 192, 160, 128)),
                    *((r, "fp16", "GPU") for r in (224, 192, 160, 128))}
    assert sel.energy_metric == "macs"
    with_energy = Selector(G.phone_lut(energy=True), "phone", Policy())
    assert with_energy.energy_metric == "energy_mj"
    assert set(sel.candidates) <= set(with_energy.candidates)  # energy is a third dimension: never fewer points


def test_latency_source_measured_model_then_macs():
    ops = G.phone_lut(one_thread=True).operating_points
    table = schema.LUT(ops, {"phone": schema.Device(latency_models=[
        schema.LatencyModel("executorch", schema.Precision.INT8, "XNNPACK", 4, 1.0, 50.0, 0.1, 3)])})
    i8 = next(i for i, op in enumerate(ops) if op.precision.value == "int8" and op.resolution == 224)
    assert Selector(table, "phone", Policy()).sources[i8] == "measured"
    _, pred = Selector(table, "phone", Policy()).predict(state())
    assert pred[i8] == 22.0  # the lower p50 of the 1- and 4-thread entries
    _, pred = Selector(table, "phone", Policy(threads=1)).predict(state())
    assert pred[i8] == 22.0 * 2.5
    no_latency = schema.LUT([schema.OperatingPoint(**{**op.__dict__, "latency": {}}) for op in ops], table.devices)
    sel = Selector(no_latency, "phone", Policy())
    assert sel.sources[i8] == "model" and sel.predict(state())[1][i8] == pytest.approx(1.0 + 50.0 * 0.3)
    fp32 = next(i for i, op in enumerate(ops) if op.precision.value == "fp32" and op.resolution == 224)
    assert sel.sources[fp32] == "macs"
    sel = Selector(no_latency, "phone", Policy(fallback_gmacs_per_s=10.0, min_top1=0.715))
    assert sel.predict(state())[1][fp32] == pytest.approx(30.0)  # 0.3 GMAC at 10 GMAC/s
    d = sel.choose(state())
    assert d.index == fp32 and d.reason == ("initial", "fits_budget", "estimated_latency_macs")


@pytest.mark.parametrize("scale, values, levels", [
    ("normalized", [0, 1, 2, 3], [0, 1, 2, 3]),
    ("android", [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 3, 3, 3]),
    ("ios", [0, 1, 2, 3], [0, 1, 2, 3]),
])
def test_thermal_states_map_onto_one_scale(scale, values, levels):
    sel = Selector(G.phone_lut(), "phone", Policy())
    assert [sel.sanitize(state(thermal=v, thermal_scale=scale))[0] for v in values] == levels
    assert sel.sanitize(state(thermal=2.0, thermal_scale=scale))[5] == []  # a whole float is fine


@pytest.mark.parametrize("field, value, fallback", [
    ("thermal", math.nan, 2), ("thermal", -1, 2), ("thermal", 1.5, 2), ("thermal", None, 2), ("thermal", True, 2),
    ("thermal", "hot", 2), ("thermal", 7, 3), ("thermal", math.inf, 3), ("thermal", -math.inf, 2),
    ("thermal_scale", "kelvin", 2), ("thermal_scale", None, 2),
    ("battery", math.nan, 0.2), ("battery", -0.1, 0.2), ("battery", 42, 0.2), ("battery", None, 0.2),
    ("battery", math.inf, 0.2), ("battery", True, 0.2),
    ("charging", None, False), ("charging", 1, False), ("power_save", None, True), ("power_save", "no", True),
    ("cpu_load", math.nan, 1.0), ("cpu_load", -math.inf, 1.0), ("cpu_load", 1.5, 1.0), ("cpu_load", "x", 1.0),
])
def test_bad_sensor_values_fall_back_conservatively(field, value, fallback):
    sel = Selector(G.phone_lut(), "phone", Policy())
    level, battery, charging, power_save, load, bad = sel.sanitize(state(**{field: value}))
    got = {"thermal": level, "thermal_scale": level, "battery": battery, "charging": charging,
           "power_save": power_save, "cpu_load": load}[field]
    assert got == fallback and bad == [f"bad_sensor:{field}"]
    d = sel.choose(state(**{field: value}))
    assert f"bad_sensor:{field}" in d.reason


def test_observe_updates_the_slowdown_ema_and_ignores_bad_measurements():
    sel = Selector(G.phone_lut(), "phone", Policy())
    d = sel.choose(state())
    for bad in (math.nan, math.inf, -math.inf, -1.0, 0.0, None, "12", True):
        assert sel.observe(d, bad) is False
    assert sel.slowdown == {"cpu": 1.0, "accelerator": 1.0}
    assert sel.observe(d, 2 * d.model_ms) is True
    assert sel.slowdown == {"cpu": 0.7 + 0.3 * 2.0, "accelerator": 1.0}
    assert sel.observe(d, 100 * d.model_ms)  # the ratio is clamped to slowdown_max = 4
    assert sel.slowdown["cpu"] == pytest.approx(0.7 * 1.3 + 0.3 * 4.0)
    gpu = Selector(G.phone_lut(), "phone", Policy()).choose(state(cpu_load=0.8))
    assert gpu.unit_class == "accelerator"
    before = sel.slowdown["cpu"]
    sel.observe(gpu, gpu.model_ms)
    assert sel.slowdown["cpu"] == pytest.approx(before + 0.005 * (1.0 - before))  # relaxes toward 1


def test_step_down_at_once_step_up_after_exactly_n_calm_frames():
    sel = Selector(G.phone_lut(), "phone", Policy(hysteresis_frames=3))
    first = sel.choose(state())
    assert (first.point.resolution, first.reason[0]) == (224, "initial")
    hot = sel.choose(state(thermal=2))
    assert (hot.point.resolution, hot.reason[0]) == (192, "step_down_no_fit")
    actions = [sel.choose(state()).reason[0] for _ in range(4)]
    assert actions == ["hold_hysteresis", "hold_hysteresis", "step_up", "hold"]
    miss = sel.choose(state())
    sel.observe(miss, miss.budget_ms + 1.0)  # one unexplained miss: noise
    again = sel.choose(state())
    assert again.reason[0] == "hold" and again.index == miss.index
    sel.observe(again, again.budget_ms + 1.0)  # the second in a row (miss_frames 2)
    after = sel.choose(state())
    assert after.reason[0] == "deadline_miss_step_down" and after.predicted_ms < miss.predicted_ms
    assert sel.switches == 3


def test_steady_latency_noise_does_not_switch():
    """A point predicted to fit with margin (22 of 33 ms) whose timings jitter by ±20 %, with a deadline miss
    every 7th frame at most: ~2 % of frames missed, never two in a row — 3000 frames, no switch. (Before
    miss_frames, each such miss stepped down and 5 calm frames stepped back up: 2 switches per miss.)"""
    sel, rng = Selector(G.phone_lut(), "phone"), random.Random(0)
    misses = 0
    for k in range(3000):
        d = sel.choose(state())
        ms = d.budget_ms + 1.0 if k % 7 == 3 and rng.random() < 0.15 else d.model_ms * rng.uniform(0.8, 1.2)
        misses += ms > d.budget_ms
        sel.observe(d, ms)
    assert sel.switches == 0 and d.point.resolution == 224 and misses > 30


@pytest.mark.parametrize("change, frames", [
    ("thermal", 1),  # the sensors tighten the budget (thermal level 2): the very next decision steps down
    ("busy_cpu", 1),  # load 0.6 puts the point within its margin (31.4 of 33 ms): its first miss steps down
    ("slowdown", 2),  # an unexplained 1.8× slowdown: miss_frames = 2 misses in a row, then a step down
])
def test_a_real_change_still_switches_within_the_documented_frames(change, frames):
    sel = Selector(G.phone_lut(), "phone")
    before = state(cpu_load=0.6) if change == "busy_cpu" else state()
    for _ in range(20):  # settled on the 224 px int8 point, every frame on time
        d = sel.choose(before)
        sel.observe(d, d.model_ms)
    first, after = d.index, state(thermal=2) if change == "thermal" else before
    chosen = []
    for _ in range(frames):
        d = sel.choose(after)
        chosen.append(d.index)
        sel.observe(d, d.model_ms * 1.8 if change == "slowdown" else d.budget_ms + 1.0)
    if change != "thermal":
        chosen.append(sel.choose(after).index)
    assert first == G.phone_lut().operating_points.index(next(
        p for p in G.phone_lut().operating_points if p.key()[:4] == (224, *G.I8)))
    assert chosen[:-1] == [first] * (len(chosen) - 1) and chosen[-1] != first and sel.switches == 1


def test_recurring_bursts_lengthen_the_wait_and_calm_windows_shorten_it():
    """probe_window_frames: a step up undone by a load burst within the window doubles the calm frames the
    next step up needs; a window without a step down halves them (not below hysteresis_frames)."""
    sel = Selector(G.phone_lut(), "phone", Policy(hysteresis_frames=2, probe_window_frames=10, backoff_max_frames=64))
    waits, calm = [], 0
    sel.choose(state())
    for cycle in range(8):
        sel.choose(state(cpu_load=0.8))  # a burst: step down
        calm = 0
        while sel.choose(state()).reason[0] != "step_up":
            calm += 1
        waits.append(calm + 1)
        for _ in range(3 if cycle < 4 else 12):  # bursts 3 frames after the step up, then calm windows
            sel.choose(state())
    assert waits[:5] == [2, 4, 8, 16, 32] and waits[5:] == [16, 8, 4]


def test_choose_is_deterministic_and_reset_starts_over():
    sel = Selector(G.demo_lut(), "phone", Policy(latency_budget_ms=20.0))
    run = lambda: [sel.choose(state(thermal=t % 4, cpu_load=(t % 3) / 3)).index for t in range(30)]  # noqa: E731
    first = run()
    sel.reset()
    assert run() == first and len(set(first)) > 1


# --------------------------------------------------------------------------- policy and bundles


def test_policy_overrides_bundle_file_then_app(tmp_path):
    schema.write_json(G.phone_lut(), tmp_path / "lut.json")
    assert Selector.from_bundle(tmp_path, "phone").choose(state()).point.resolution == 224
    (tmp_path / POLICY_FILE).write_text(json.dumps({"latency_budget_ms": 12, "hysteresis_frames": 2}))
    sel = Selector.from_bundle(tmp_path, "phone")
    assert sel.policy.latency_budget_ms == 12.0 and sel.policy.hysteresis_frames == 2
    assert sel.choose(state()).point.resolution == 160
    sel = Selector.from_bundle(tmp_path, "phone", policy={"latency_budget_ms": 20})
    assert (sel.policy.latency_budget_ms, sel.policy.hysteresis_frames) == (20.0, 2)  # app over bundle
    sel = Selector.from_bundle(tmp_path, "phone", policy=Policy(latency_budget_ms=33))
    assert sel.policy == Policy(latency_budget_ms=33)  # a full Policy is used as is
    assert Policy.from_dict(Policy(min_top1=0.5).to_dict()) == Policy(min_top1=0.5)


@pytest.mark.parametrize("doc, message", [
    ({"latency_budget_ms": -1}, "latency_budget_ms = -1.0, expected a number in (0.0"),
    ({"thermal_budget": [1, 0.9]}, "thermal_budget = (1.0, 0.9), expected 4 numbers"),
    ({"thermal_budget": [0.5, 0.9, 1, 1]}, "thermal_budget = (0.5, 0.9, 1.0, 1.0), expected non-increasing"),
    ({"battery_critical": 0.5}, "battery_low = 0.2, expected a number in [battery_critical, 1.0]"),
    ({"hysteresis_frames": 0}, "hysteresis_frames = 0, expected a positive integer"),
    ({"miss_frames": 0}, "miss_frames = 0, expected a positive integer (at most 1000000)"),
    ({"probe_window_frames": 2.5}, "probe_window_frames = 2.5, expected a positive integer"),
    ({"latency_budget": 30}, "unknown policy field(s) ['latency_budget']"),
    ({"kind": "resflex.lut"}, "kind must be 'resflex.selector_policy'"),
    ({"schema_version": "2.0"}, "schema_version '2.0' is not supported"),
    ([1, 2], "expected a JSON object of policy fields"),
])
def test_bad_policy_file_names_the_file_and_field(doc, message, tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as e:
        load_policy(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_selector_refuses_an_empty_or_wrong_table(tmp_path):
    with pytest.raises(ValueError, match="no operating points"):
        Selector(schema.LUT([]), "phone")
    with pytest.raises(TypeError, match="expected a resflex.mobile.bundle.schema.LUT"):
        Selector({"operating_points": []}, "phone")
    with pytest.raises(FileNotFoundError, match="not a bundle directory"):
        Selector.from_bundle(tmp_path / "missing")
    (tmp_path / "lut.json").write_text("{")
    with pytest.raises(schema.SchemaError, match="lut.json: not valid JSON"):
        Selector.from_bundle(tmp_path)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A real bundle: a tiny RS-Net converted to ONNX fp32 (its LUT has MACs and top-1 but no latencies)."""
    from resflex.convert.pipeline import ConvertConfig, convert
    from resflex.mobile.checkpoint import save_checkpoint
    from resflex.mobile.models import create_model

    root = tmp_path_factory.mktemp("selector_bundle")
    model = create_model("tiny_cnn", "rsnet", (32, 24, 16), width=0.5, num_classes=4).eval()
    names = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
    checkpoint = save_checkpoint(root / "ckpt" / "checkpoint.pt", model, names)
    convert(ConvertConfig(checkpoint=str(checkpoint), out=str(root / "bundle"), backends=("onnx",),
                          precisions=("fp32",), progress=False, val_samples=16, calib_samples=8))
    return root / "bundle"


def test_real_bundle_estimates_from_macs_and_tightens_with_heat(tiny_bundle):
    table = schema.read_json(schema.LUT, tiny_bundle / "lut.json")
    budget = max(op.macs for op in table.operating_points) / 5e6 * 0.9  # the largest does not fit
    sel = Selector.from_bundle(tiny_bundle, "host", policy={"latency_budget_ms": budget})
    d = sel.choose(DeviceState())
    assert d.point in table.operating_points and d.point.resolution != 32
    assert "fits_budget" in d.reason and "estimated_latency_macs" in d.reason
    hot = sel.choose(DeviceState(thermal=3))  # budget × 0.5, CPU × 1.6: only 16 px (a quarter of the MACs) fits
    assert hot.point.resolution == 16 and "fits_budget" in hot.reason


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def phone_bundle(tmp_path):
    schema.write_json(G.phone_lut(), tmp_path / "lut.json")
    return tmp_path


def test_cli_prints_one_decision_with_its_reason(phone_bundle, capsys):
    assert main(["select", str(phone_bundle), "--device", "phone", "--thermal", "2"]) == 0
    out = capsys.readouterr().out
    assert "192 px · executorch · int8 · XNNPACK" in out
    assert "reason:          initial, fits_budget, thermal_tightened, thermal_cpu_slowdown" in out
    assert main(["select", str(phone_bundle), "--device", "phone", "--cpu-load", "0.8", "--battery", "0.15",
                 "--charging", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["resolution"], d["compute_unit"], d["unit_class"]) == (192, "GPU", "accelerator")
    assert d["reason"] == ["initial", "fits_budget", "cpu_load_slowdown", "charging", "accelerator"]
    assert main(["select", str(phone_bundle), "--device", "phone", "--budget-ms", "12", "--thermal", "6",
                 "--thermal-scale", "android", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["budget_ms"] == 6.0 and d["reason"][0] == "none_fit_fallback_fastest"


def test_cli_policy_file_and_emit_golden(phone_bundle, tmp_path, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"latency_budget_ms": 12}))
    assert main(["select", str(phone_bundle), "--device", "phone", "--policy", str(policy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] == 160
    out = tmp_path / "golden" / "g.json"
    out.parent.mkdir()  # issue 10 (12): a missing folder is an error, not created silently
    assert G.main([str(out)]) == 0
    assert out.read_bytes() == GOLDEN_PATH.read_bytes()
    script = subprocess.run([sys.executable, str(GOLDEN_SCRIPT), str(tmp_path / "g2.json")], capture_output=True,
                            text=True)
    assert script.returncode == 0 and (tmp_path / "g2.json").read_bytes() == GOLDEN_PATH.read_bytes()


def test_cli_without_a_bundle_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["select"])
    assert exit_.value.code == 2 and "the following arguments are required: bundle" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["select", "/nonexistent/bundle"], "/nonexistent/bundle: not a bundle directory"),
    (["select", "{bundle}", "--policy", "/nonexistent/p.json"], "/nonexistent/p.json: policy file not found"),
    (["select", "{bundle}", "--budget-ms", "0"], "command line: latency_budget_ms = 0.0"),
])
def test_cli_bad_input_is_a_clear_error(argv, message, phone_bundle, capsys):
    assert main([a.replace("{bundle}", str(phone_bundle)) for a in argv]) == 2
    assert f"resflex select: error: {message}" in capsys.readouterr().err


def test_equally_accurate_points_do_not_trade_places():
    """Found by the property test above: a CPU and a GPU point of equal top-1 that both fit, each measured slower
    than the LUT says; the unobserved one's slowdown relaxes, so it looks faster again every few frames. A step up
    within the probe window of the previous one backs off, so the switches die out instead of 50 in 400 frames."""
    def point(unit, ms):
        lat = {"phone": [schema.Latency("tflite", 1, 10, ms, ms, ms)]} if ms else {}
        return schema.OperatingPoint(96, schema.Backend.TFLITE, schema.Precision.FP32, unit, "tflite/m_fp32", "e96",
                                     9216000, 1, 1, 1, top1=0.5, latency=lat)

    table = schema.LUT([point("GPU", 10.0), point("CPU", 5.0)], devices={"phone": schema.Device(facts={})})
    sel = Selector(table, "phone", Policy(latency_budget_ms=15.0))
    state, counts = DeviceState(battery=1.0, cpu_load=0.8125), []
    for _ in range(600):
        d = sel.choose(state)
        counts.append(sel.switches)
        sel.observe(d, d.model_ms * (1.5 if d.unit_class == "cpu" else 1.25))
    assert counts[-1] - counts[200] <= 2
