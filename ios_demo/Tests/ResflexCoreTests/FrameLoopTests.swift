import Foundation
import XCTest
import ResflexGolden
import ResflexSelector
@testable import ResflexCore

/// The frame loop around the selector: every selector golden case replayed through FrameLoop (fake engine, a clock
/// whose measured time per step is the golden's observed_ms, signals = the golden states), point removal on load or
/// run failure, pinning a resolution, top-k.
final class FrameLoopTests: XCTestCase {
    func testReplaysEverySelectorGoldenCaseThroughTheFrameLoop() throws {
        let cases = try XCTUnwrap(GoldenSelector.document()["cases"]?.arrayValue)
        var steps = 0
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let lut = try Lut.fromJSON(try XCTUnwrap(c["lut"]), source: "case \(name) lut")
            let policy = try Policy.fromJSON(try XCTUnwrap(c["policy"]), source: "case \(name) policy")
            let selector = try OperatingPointSelector(lut: lut, device: try XCTUnwrap(c["device"]?.stringValue),
                                                      policy: policy, computeUnits: GoldenSelector.computeUnits(c))
            let engine = FakeEngine(backends: Set(lut.operatingPoints.map { $0.backend }))
            let clock = ScriptedClock()
            let signals = ScriptedSignals()
            let loop = try FrameLoop(selector: selector, engine: engine, signals: signals, clock: clock,
                                     classNames: ["a", "b", "c", "d", "e"])
            XCTAssertTrue(loop.unavailable.isEmpty)
            var problems: [String] = []
            for (n, step) in (c["steps"]?.arrayValue ?? []).enumerated() {
                signals.next = GoldenSelector.state(step["state"])
                // The loop reads the clock right before and right after the inference: the difference is the
                // golden's observed_ms (a null observed_ms: no time passes, and a 0 ms measurement is ignored).
                let observed = step["observed_ms"]
                var ms = 0.0
                // (JSONDecoder reads 34.0 as an integer: take any number as a Double; "fast" → NaN, ignored the same.)
                if let o = observed, !o.isNull {
                    ms = o.doubleValue ?? (GoldenSelector.decode(o) as? Double) ?? Double.nan
                }
                clock.readings = [100.0, 100.0 + ms]
                let before = clock.calls
                let r = try loop.step { p in ([0], [1, 3, p.resolution, p.resolution]) }
                XCTAssertEqual(clock.calls - before, 2)
                for p in GoldenSelector.compare(r.decision, try XCTUnwrap(step["expected"]), reasons: r.reasons) {
                    problems.append("step \(n): \(p)")
                }
                let shouldObserve = observed.map { !$0.isNull } == true && ms.isFinite && ms > 0
                if r.observed != shouldObserve { problems.append("step \(n): observed \(r.observed)") }
                let names = ["a", "b", "c", "d", "e"]
                if r.top.count != 3 || r.top[0].name != names[(r.point.resolution / 32) % 5]
                    || r.top[1].name != names[(r.point.resolution / 32 + 1) % 5] {
                    problems.append("step \(n): top \(r.top)")
                }
                steps += 1
            }
            XCTAssertTrue(problems.isEmpty, "golden case \(name):\n" + problems.joined(separator: "\n"))
        }
        print("replayed \(cases.count) selector golden cases (\(steps) frames) through FrameLoop")
    }

    /// setUnavailable(S) must behave exactly as a selector built on the LUT without S, for every golden case.
    func testUnavailablePointsBehaveAsIfAbsentFromTheLut() throws {
        var compared = 0
        for c in try XCTUnwrap(GoldenSelector.document()["cases"]?.arrayValue) {
            let name = c["name"]?.stringValue ?? "?"
            let lut = try Lut.fromJSON(try XCTUnwrap(c["lut"]))
            let policy = try Policy.fromJSON(try XCTUnwrap(c["policy"]))
            let device = try XCTUnwrap(c["device"]?.stringValue)
            let steps = c["steps"]?.arrayValue ?? []
            // Remove the golden's first choice (so the rest must change) and, separately, every odd point.
            let first = steps.first?["expected"]?["index"]?.intValue ?? 0
            for removed in [Set([first]), Set(stride(from: 1, to: lut.operatingPoints.count, by: 2))] {
                if removed.count >= lut.operatingPoints.count { continue }
                let keep = (0..<lut.operatingPoints.count).filter { !removed.contains($0) }
                let a = try OperatingPointSelector(lut: lut, device: device, policy: policy)
                try a.setUnavailable(removed)
                let b = try OperatingPointSelector(
                    lut: Lut(operatingPoints: keep.map { lut.operatingPoints[$0] }, latencyModels: lut.latencyModels),
                    device: device, policy: policy)
                XCTAssertEqual(a.candidates.map { lut.operatingPoints[$0] }, b.candidates.map { b.lut.operatingPoints[$0] },
                               name)
                XCTAssertEqual(a.energyMetric, b.energyMetric, name)
                for (n, step) in steps.enumerated() {
                    let state = GoldenSelector.state(step["state"])
                    let da = a.choose(state)
                    let db = b.choose(state)
                    XCTAssertEqual(da.point, db.point, "\(name) step \(n)")
                    XCTAssertEqual(keep[db.index], da.index, "\(name) step \(n)")
                    XCTAssertEqual(da.reason, db.reason, "\(name) step \(n)")
                    XCTAssertEqual(da.predictedMs, db.predictedMs, "\(name) step \(n)")
                    XCTAssertEqual(da.budgetMs, db.budgetMs, "\(name) step \(n)")
                    if let o = step["observed_ms"], !o.isNull {
                        XCTAssertEqual(a.observe(da, measuredMs: GoldenSelector.decode(o)),
                                       b.observe(db, measuredMs: GoldenSelector.decode(o)))
                    }
                }
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 32)
    }

    func testSetUnavailableWithNothingRemovedChangesNothingAndAllRemovedIsRefused() throws {
        let c = try XCTUnwrap(GoldenSelector.document()["cases"]?.arrayValue?.first)
        let lut = try Lut.fromJSON(try XCTUnwrap(c["lut"]))
        let s = try OperatingPointSelector(lut: lut, device: "phone")
        let before = s.candidates
        try s.setUnavailable([])
        XCTAssertEqual(s.candidates, before)
        XCTAssertThrowsError(try s.setUnavailable(Set(0..<lut.operatingPoints.count))) { error in
            XCTAssertTrue("\(error)".contains("no operating point left"), "\(error)")
        }
        XCTAssertEqual(s.candidates, before)
        XCTAssertTrue(s.unavailable.isEmpty)
    }

    /// A small LUT: Core ML at 224 and 160 on CPU_ONLY and ALL, and one TFLite point the engine does not serve.
    func lut() throws -> Lut {
        func op(_ r: Int, _ unit: String, _ ms: Double, _ top1: Double, backend: String = "coreml") -> String {
            return """
                {"resolution": \(r), "backend": "\(backend)", "precision": "fp16", "compute_unit": "\(unit)",
                 "artifact": "\(backend)/model", "entry": "main_\(r)", "macs": \(r * r * 1000), "top1": \(top1),
                 "latency": {"phone": [{"runtime": "\(backend)", "threads": 0, "p50_ms": \(ms)}]}}
                """
        }
        let text = """
            {"kind": "resflex.lut", "schema_version": "1.0", "operating_points": [
            \(op(224, "CPU_ONLY", 30, 0.75)), \(op(224, "ALL", 8, 0.75)), \(op(160, "CPU_ONLY", 15, 0.70)),
            \(op(160, "ALL", 5, 0.70)), \(op(256, "GPU", 1, 0.9, backend: "tflite"))], "devices": {"phone": {}}}
            """
        return try Lut.parse(Data(text.utf8))
    }

    func testPointsOfBackendsTheEngineDoesNotServeAreNeverChosen() throws {
        let engine = FakeEngine(backends: ["coreml"])
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: ScriptedSignals(), clock: ScriptedClock())
        XCTAssertEqual(loop.unavailable.map { $0.index }, [4])
        XCTAssertEqual(loop.unavailable.first?.error, "backend tflite is not served by this app")
        let r = try loop.step { _ in ([0], [1]) }
        XCTAssertEqual(r.point.backend, "coreml")
        XCTAssertEqual(r.point.computeUnit, "ALL")
        XCTAssertEqual(r.point.resolution, 224)
    }

    func testAnEntryThatFailsToLoadForAComputeUnitIsRemovedWithItsReason() throws {
        let engine = FakeEngine(backends: ["coreml"])
        engine.failLoad = { p in p.computeUnit == "ALL" ? "Neural Engine compilation failed for \(p.entry)" : nil }
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: ScriptedSignals(), clock: ScriptedClock())
        let failed = try loop.prepare()
        XCTAssertEqual(failed.map { $0.index }, [1, 3])
        XCTAssertEqual(failed[0].error, "Neural Engine compilation failed for main_224")
        XCTAssertEqual(loop.selector.unavailable, [1, 3, 4])
        // Budget 33 ms: 224 on the CPU (30 ms) now.
        let r = try loop.step { _ in ([0], [1]) }
        XCTAssertEqual(FakeEngine.key(r.point), "main_224@CPU_ONLY")
        XCTAssertEqual(r.reasons, ["initial", "fits_budget"])
        XCTAssertEqual(engine.loads.filter { $0 == "main_224@CPU_ONLY" }.count, 1)  // loaded once, in prepare
    }

    func testAnEntryThatFailsOnFirstUseIsRemovedAndTheFrameChoosesAgain() throws {
        let engine = FakeEngine(backends: ["coreml"])
        engine.failRun = { p in FakeEngine.key(p) == "main_224@ALL" ? "MLModel prediction failed" : nil }
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: ScriptedSignals(), clock: ScriptedClock())
        let r = try loop.step { _ in ([0], [1]) }
        XCTAssertEqual(FakeEngine.key(r.point), "main_224@CPU_ONLY")
        XCTAssertEqual(r.reasons, ["initial", "fits_budget", "entry_failed"])
        XCTAssertEqual(loop.unavailable.last?.error, "MLModel prediction failed")
        let next = try loop.step { _ in ([0], [1]) }
        XCTAssertEqual(next.reasons, ["hold", "fits_budget"])
    }

    func testNothingLoadableIsAnError() throws {
        let engine = FakeEngine(backends: ["coreml"])
        engine.failLoad = { _ in "no Neural Engine" }
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: ScriptedSignals(), clock: ScriptedClock())
        XCTAssertThrowsError(try loop.prepare()) { error in
            XCTAssertTrue("\(error)".contains("no operating point can run"), "\(error)")
            XCTAssertTrue("\(error)".contains("main_160@ALL: no Neural Engine"), "\(error)")
        }
        XCTAssertThrowsError(try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"),
                                           engine: FakeEngine(backends: ["executorch"]), signals: ScriptedSignals()))
    }

    func testPinAResolution() throws {
        let engine = FakeEngine(backends: ["coreml"])
        let signals = ScriptedSignals()
        let clock = ManualClock()
        engine.clock = clock
        engine.runMs = { p, _ in p.computeUnit == "ALL" ? 6 : 20 }
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: signals, clock: clock)
        XCTAssertEqual(try loop.step { _ in ([0], [1]) }.point.resolution, 224)
        try loop.pin(resolution: 160)
        let pinned = try loop.step { p in ([0], [1, 3, p.resolution, p.resolution]) }
        XCTAssertEqual(pinned.point.resolution, 160)
        XCTAssertEqual(pinned.point.computeUnit, "ALL")
        XCTAssertEqual(pinned.reasons, ["initial", "fits_budget", "accelerator", "pinned_resolution"])
        XCTAssertEqual(pinned.latencyMs, 6)
        XCTAssertFalse(pinned.overBudget)
        XCTAssertThrowsError(try loop.pin(resolution: 256)) { error in  // only a TFLite point has 256
            XCTAssertTrue("\(error)".contains("cannot pin resolution 256"), "\(error)")
        }
        XCTAssertEqual(loop.pinnedResolution, 160)
        XCTAssertEqual(try loop.step { _ in ([0], [1]) }.point.resolution, 160)
        // Unpinned, the current point stays a candidate: the selector steps up after its hysteresis frames.
        try loop.pin(resolution: nil)
        var reasons: [[String]] = []
        for _ in 0..<5 { reasons.append(try loop.step { _ in ([0], [1]) }.reasons) }
        XCTAssertEqual(reasons.map { $0[0] }, ["hold_hysteresis", "hold_hysteresis", "hold_hysteresis",
                                               "hold_hysteresis", "step_up"])
        XCTAssertFalse(reasons.joined().contains("pinned_resolution"))
        XCTAssertEqual(try loop.step { _ in ([0], [1]) }.point.resolution, 224)
    }

    func testLatencyOverBudgetIsReportedAndFedBack() throws {
        let engine = FakeEngine(backends: ["coreml"])
        let clock = ManualClock()
        engine.clock = clock
        engine.runMs = { _, _ in 50 }
        let loop = try FrameLoop(selector: try OperatingPointSelector(lut: try lut(), device: "phone"), engine: engine,
                                 signals: ScriptedSignals(), clock: clock)
        let r = try loop.step { _ in ([0], [1]) }
        XCTAssertEqual(r.latencyMs, 50)
        XCTAssertEqual(r.budgetMs, 33)
        XCTAssertTrue(r.overBudget)
        XCTAssertTrue(r.observed)
        // One miss of a point predicted to fit with margin is noise; the second in a row steps down (miss_frames 2).
        XCTAssertEqual(try loop.step { _ in ([0], [1]) }.reasons.first, "hold")
        XCTAssertEqual(try loop.step { _ in ([0], [1]) }.reasons.first, "deadline_miss_step_down")
    }

    func testTopKSoftmax() {
        let top = FrameLoop.top([1, 3, 3, -1e30, 2], k: 3, names: ["a", "b", "c"])
        XCTAssertEqual(top.map { $0.index }, [1, 2, 4])
        XCTAssertEqual(top.map { $0.name }, ["b", "c", "4"])
        let e = [1.0, 3, 3, 0, 2].map { exp($0 - 3) }
        XCTAssertEqual(top[0].probability, exp(0.0) / (e[0] + e[1] + e[2] + e[4]), accuracy: 1e-12)
        XCTAssertEqual(FrameLoop.top([], k: 3, names: []), [])
        XCTAssertEqual(FrameLoop.top([Float.infinity, 0], k: 1, names: []).first?.index, 0)
    }
}
