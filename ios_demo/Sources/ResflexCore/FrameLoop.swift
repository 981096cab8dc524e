import Foundation
import ResflexSelector

/// Runs the entry (Core ML function, ExecuTorch method, …) of an operating point. Implemented by ResflexCoreML's
/// `CoreMLEngine`, and by fakes in the tests.
public protocol InferenceEngine: AnyObject {
    /// The LUT backends this engine serves ("coreml", "executorch"); points of other backends are never chosen.
    var backends: Set<String> { get }
    /// Prepare (compile, load) the entry of `point` for its compute unit; throws when this phone cannot serve it.
    func load(_ point: OperatingPoint) throws
    /// One inference: the input tensor (the artifact's layout, batch 1, flattened) → the output (logits).
    func run(_ point: OperatingPoint, input: [Float], shape: [Int]) throws -> [Float]
}

/// The phone's state now (thermal state, Low Power Mode, battery, …) for the selector.
public protocol Signals: AnyObject {
    func state() -> DeviceState
}

/// A monotonic clock in milliseconds.
public protocol Clock: AnyObject {
    func nowMs() -> Double
}

public final class SystemClock: Clock {
    public init() {}
    public func nowMs() -> Double {
        return Double(DispatchTime.now().uptimeNanoseconds) / 1e6
    }
}

/// One class of the output (ClassScore, not Label, which SwiftUI has): index, name (from manifest.json
/// `model.class_names`), softmax probability.
public struct ClassScore: Equatable {
    public let index: Int
    public let name: String
    public let probability: Double
}

/// An operating point taken out of the candidates, and why.
public struct Unavailable: Equatable {
    public let index: Int
    public let point: OperatingPoint
    public let error: String
}

/// What one frame did.
public struct FrameResult {
    public let decision: Decision
    public var point: OperatingPoint { return decision.point }
    /// Top-k labels by softmax probability (ties: lower class index first).
    public let top: [ClassScore]
    /// Measured inference time (the clock around `InferenceEngine.run` only; loading and preprocessing excluded).
    public let latencyMs: Double
    public var budgetMs: Double { return decision.budgetMs }
    public var overBudget: Bool { return latencyMs > decision.budgetMs }
    /// Whether the selector took the measurement (a finite time > 0).
    public let observed: Bool
    /// The selector's reason codes, then the loop's: "pinned_resolution", "entry_failed" (an entry failed on this
    /// frame, its point was removed and the selector chose again).
    public let reasons: [String]
    public let state: DeviceState
}

public struct FrameLoopError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// Per frame: read the signals, let the selector choose, load the entry if needed, build the input for the chosen
/// point, time the inference, feed the measured time back, and report the top-k labels. Not thread-safe: one per
/// stream, on one queue.
///
///     let loop = try FrameLoop(selector: selector, engine: engine, signals: signals, classNames: names)
///     let result = try loop.step { point in try (Preprocess.tensor(frame, ...), shape) }
public final class FrameLoop {
    public let selector: OperatingPointSelector
    public let engine: InferenceEngine
    public let signals: Signals
    public let clock: Clock
    public let classNames: [String]
    public let topK: Int

    /// Points removed from the candidates (not served by the engine, or failed to load or run), in LUT order of
    /// discovery.
    public private(set) var unavailable: [Unavailable] = []
    public private(set) var pinnedResolution: Int? = nil
    private var loaded = Set<Int>()

    public init(selector: OperatingPointSelector, engine: InferenceEngine, signals: Signals, clock: Clock = SystemClock(),
                classNames: [String] = [], topK: Int = 3) throws {
        self.selector = selector
        self.engine = engine
        self.signals = signals
        self.clock = clock
        self.classNames = classNames
        self.topK = topK
        for (i, op) in selector.lut.operatingPoints.enumerated() where !engine.backends.contains(op.backend) {
            unavailable.append(Unavailable(index: i, point: op, error: "backend \(op.backend) is not served by this app"))
        }
        try apply()
    }

    /// Load every remaining point now (instead of on first use); those that fail are removed. Returns the failures.
    @discardableResult
    public func prepare() throws -> [Unavailable] {
        var failed: [Unavailable] = []
        for (i, op) in selector.lut.operatingPoints.enumerated() where !isRemoved(i) && !loaded.contains(i) {
            do {
                try engine.load(op)
                loaded.insert(i)
            } catch {
                let u = Unavailable(index: i, point: op, error: "\(error)")
                unavailable.append(u)
                failed.append(u)
            }
        }
        try apply()
        return failed
    }

    /// Pin a resolution (only its points are candidates: the selector still picks backend, precision and compute
    /// unit and reports over-budget), or unpin with nil. Throws when no available point has that resolution.
    public func pin(resolution: Int?) throws {
        let old = pinnedResolution
        pinnedResolution = resolution
        do {
            try apply()
        } catch {
            pinnedResolution = old
            try? apply()
            throw FrameLoopError("cannot pin resolution \(resolution.map(String.init) ?? "none"): no available "
                + "operating point has it")
        }
    }

    private func isRemoved(_ i: Int) -> Bool {
        return unavailable.contains { $0.index == i }
    }

    private func apply() throws {
        var out = Set(unavailable.map { $0.index })
        if let r = pinnedResolution {
            for (i, op) in selector.lut.operatingPoints.enumerated() where op.resolution != r { out.insert(i) }
        }
        do {
            try selector.setUnavailable(out)
        } catch {
            let why = unavailable.map { "\($0.point.entry)@\($0.point.computeUnit): \($0.error)" }
            throw FrameLoopError("no operating point can run: " + why.joined(separator: "; "))
        }
    }

    /// One frame. `input` builds the chosen point's input tensor and its shape (e.g. with `Preprocess.tensor`).
    public func step(input: (OperatingPoint) throws -> (values: [Float], shape: [Int])) throws -> FrameResult {
        let state = signals.state()
        var extra: [String] = []
        while true {
            let d = selector.choose(state)
            let i = d.index
            do {
                if !loaded.contains(i) {
                    try engine.load(d.point)
                    loaded.insert(i)
                }
                let (values, shape) = try input(d.point)
                let t0 = clock.nowMs()
                let output = try engine.run(d.point, input: values, shape: shape)
                let t1 = clock.nowMs()
                let ms = t1 - t0
                let observed = selector.observe(d, measuredMs: ms)
                if pinnedResolution != nil { extra.insert("pinned_resolution", at: 0) }
                return FrameResult(decision: d, top: FrameLoop.top(output, k: topK, names: classNames), latencyMs: ms,
                                   observed: observed, reasons: d.reason + extra, state: state)
            } catch let e as PreprocessError {
                throw e  // the frame is bad, not the point
            } catch {
                unavailable.append(Unavailable(index: i, point: d.point, error: "\(error)"))
                if !extra.contains("entry_failed") { extra.append("entry_failed") }
                try apply()
            }
        }
    }

    /// Top-k of softmax(logits) (computed stably in Double); ties by lower index.
    public static func top(_ logits: [Float], k: Int, names: [String]) -> [ClassScore] {
        guard !logits.isEmpty, k > 0 else { return [] }
        var m = -Double.infinity
        for v in logits where Double(v) > m { m = Double(v) }
        if !m.isFinite { m = 0 }
        let e = logits.map { Foundation.exp(Double($0) - m) }
        let total = e.reduce(0, +)
        let order = e.indices.sorted { e[$0] != e[$1] ? e[$0] > e[$1] : $0 < $1 }
        return order.prefix(k).map { i in
            ClassScore(index: i, name: i < names.count ? names[i] : String(i), probability: total > 0 ? e[i] / total : 0)
        }
    }
}
