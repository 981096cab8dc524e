import Foundation
import ResflexGolden
import ResflexSelector
@testable import ResflexCore

/// A clock that returns scripted readings (then repeats the last one).
final class ScriptedClock: Clock {
    var readings: [Double] = []
    var last = 0.0
    private(set) var calls = 0

    func nowMs() -> Double {
        calls += 1
        if !readings.isEmpty { last = readings.removeFirst() }
        return last
    }
}

/// A clock that advances only when told (the fake engine advances it while "running").
final class ManualClock: Clock {
    var now = 1000.0
    func nowMs() -> Double { return now }
}

/// Serves the given backends; logits put the highest score on class (resolution / 32) % classes; can be told to
/// fail loading or running some points, and to advance a ManualClock per run.
final class FakeEngine: InferenceEngine {
    let backends: Set<String>
    var failLoad: (OperatingPoint) -> String? = { _ in nil }
    var failRun: (OperatingPoint) -> String? = { _ in nil }
    var runMs: ((OperatingPoint, Int) -> Double)? = nil
    var clock: ManualClock? = nil
    var classes = 5
    private(set) var loads: [String] = []
    private(set) var runs: [String] = []
    private(set) var shapes: [[Int]] = []

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(backends: Set<String>) {
        self.backends = backends
    }

    static func key(_ p: OperatingPoint) -> String {
        return "\(p.entry)@\(p.computeUnit)"
    }

    func load(_ point: OperatingPoint) throws {
        loads.append(FakeEngine.key(point))
        if let e = failLoad(point) { throw Failure(description: e) }
    }

    func run(_ point: OperatingPoint, input: [Float], shape: [Int]) throws -> [Float] {
        if let e = failRun(point) { throw Failure(description: e) }
        let n = runs.filter { $0 == FakeEngine.key(point) }.count
        runs.append(FakeEngine.key(point))
        shapes.append(shape)
        if let c = clock, let ms = runMs { c.now += ms(point, n) }
        var logits = [Float](repeating: 0, count: classes)
        logits[(point.resolution / 32) % classes] = 4
        logits[(point.resolution / 32 + 1) % classes] = 2
        return logits
    }
}

/// Returns whatever state the test sets.
final class ScriptedSignals: Signals {
    var next = DeviceState()
    func state() -> DeviceState { return next }
}

enum GoldenSelector {
    static func document() throws -> JSONValue {
        return try JSONValue.parse(Golden.data("selector_golden"))
    }

    /// The golden file's encoding: "NaN", "Infinity", "-Infinity" → doubles; JSON null → nil; else as is.
    static func decode(_ value: JSONValue?) -> Any? {
        guard let value = value else { return nil }
        switch value {
        case .null: return nil
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s):
            switch s {
            case "NaN": return Double.nan
            case "Infinity": return Double.infinity
            case "-Infinity": return -Double.infinity
            default: return s
            }
        case .array, .object: return value
        }
    }

    static func state(_ s: JSONValue?) -> DeviceState {
        return DeviceState(battery: decode(s?["battery"]), charging: decode(s?["charging"]),
                           powerSave: decode(s?["power_save"]), thermal: decode(s?["thermal"]),
                           cpuLoad: decode(s?["cpu_load"]), thermalScale: decode(s?["thermal_scale"]))
    }

    /// Differences between a decision and a golden `expected` (empty when equal).
    static func compare(_ d: Decision, _ want: JSONValue, reasons: [String]? = nil) -> [String] {
        var problems: [String] = []
        func check(_ field: String, _ got: String, _ expected: String?) {
            if got != expected { problems.append("\(field) is \(got), expected \(expected ?? "nothing")") }
        }
        check("index", String(d.index), want["index"]?.intValue.map { String($0) })
        check("resolution", String(d.point.resolution), want["resolution"]?.intValue.map { String($0) })
        check("backend", d.point.backend, want["backend"]?.stringValue)
        check("precision", d.point.precision, want["precision"]?.stringValue)
        check("compute_unit", d.point.computeUnit, want["compute_unit"]?.stringValue)
        check("unit_class", d.unitClass, want["unit_class"]?.stringValue)
        check("latency_source", d.latencySource, want["latency_source"]?.stringValue)
        let reason = (want["reason"]?.arrayValue ?? []).map { $0.stringValue ?? "?" }
        check("reason", (reasons ?? d.reason).joined(separator: ","), reason.joined(separator: ","))
        for (field, got) in [("predicted_ms", d.predictedMs), ("budget_ms", d.budgetMs)] {
            let expected = want[field]?.doubleValue ?? Double.nan
            if !(abs(got - expected) <= 1e-6) { problems.append("\(field) is \(got), expected \(expected)") }
        }
        return problems
    }
}
