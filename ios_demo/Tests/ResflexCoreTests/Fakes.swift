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
