import Foundation
import ResflexSelector

/// Measures the energy of a run of inferences (e.g. from the battery's current × voltage). Optional.
public protocol EnergyMeter: AnyObject {
    /// True when the energy is an estimate (written as `energy_estimated`).
    var estimated: Bool { get }
    func start()
    /// Energy in mJ since `start()`, or nil when it could not be measured.
    func stop() -> Double?
}

/// q-th percentile with linear interpolation between order statistics (numpy's default): sorted xs,
/// rank = (n − 1)·q/100, lo = floor(rank), hi = min(lo + 1, n − 1), xs[lo] + (xs[hi] − xs[lo])·(rank − lo).
public func percentile(_ samples: [Double], _ q: Double) -> Double {
    precondition(!samples.isEmpty, "percentile of no samples")
    let xs = samples.sorted()
    let rank = Double(xs.count - 1) * q / 100.0
    let lo = Int(rank.rounded(.down))
    let hi = min(lo + 1, xs.count - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - Double(lo))
}

/// One operating point measured on this phone (`measurements[]` of device_profile.json).
public struct Measurement {
    public let point: OperatingPoint
    public let runtime: String
    public let threads: Int
    public let runs: Int
    public let p50Ms: Double
    public let p90Ms: Double
    public let p99Ms: Double
    public let peakMemoryMb: Double?
    public let gflops: Double?
    public let energyMj: Double?
    public let energyEstimated: Bool
}

/// An operating point that could not be measured (`failures[]`).
public struct BenchmarkFailure {
    public let point: OperatingPoint
    public let error: String
}

/// A phone's own measurements, `device_profile.json` (tests/golden/README.md; imported with
/// `resflex profile BUNDLE --import device_profile.json`).
public struct DeviceProfile {
    public static let kind = "resflex.device_profile"
    public static let schemaVersion = "1.0"
    public static let file = "device_profile.json"

    public let deviceId: String
    public let facts: [String: String]
    public let checkpointSha256: String
    public let measurements: [Measurement]
    public let failures: [BenchmarkFailure]

    /// A LUT device key (mobile/bundle/schema.py DEVICE_ID): ^[a-z0-9][a-z0-9._-]{0,127}$.
    public static func isValidDeviceId(_ id: String) -> Bool {
        let u = Array(id.unicodeScalars)
        guard let first = u.first, u.count <= 128, ("a"..."z").contains(first) || ("0"..."9").contains(first) else {
            return false
        }
        return u.allSatisfy {
            ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        }
    }

    /// A device id from free text (e.g. "iPhone16,1" → "ios-iphone16-1"): lower case, other characters → "-".
    public static func deviceId(platform: String = "ios", model: String) -> String {
        var out = ""
        for u in (platform + "-" + model).lowercased().unicodeScalars {
            let ok = ("a"..."z").contains(u) || ("0"..."9").contains(u) || u == "." || u == "_" || u == "-"
            out += ok ? String(u) : "-"
        }
        return out
    }

    public func json() -> JSONOut {
        func stage(_ p: OperatingPoint) -> JSONOut {
            guard let s = p.stageScales else { return .null }
            return .array(s.map { JSONOut.finite($0) })
        }
        let ms: [JSONOut] = measurements.map { m in
            .object([
                ("resolution", .int(m.point.resolution)), ("backend", .string(m.point.backend)),
                ("precision", .string(m.point.precision)), ("compute_unit", .string(m.point.computeUnit)),
                ("stage_scales", stage(m.point)), ("entry", .string(m.point.entry)),
                ("latency", .object([
                    ("runtime", .string(m.runtime)), ("threads", .int(m.threads)), ("runs", .int(m.runs)),
                    ("p50_ms", .finite(m.p50Ms)), ("p90_ms", .finite(m.p90Ms)), ("p99_ms", .finite(m.p99Ms)),
                    ("peak_memory_mb", .finite(m.peakMemoryMb)), ("gflops", .finite(m.gflops)),
                    ("energy_mj", .finite(m.energyMj)),
                ])),
                ("energy_estimated", .bool(m.energyEstimated)),
            ])
        }
        let fs: [JSONOut] = failures.map { f in
            .object([
                ("resolution", .int(f.point.resolution)), ("backend", .string(f.point.backend)),
                ("precision", .string(f.point.precision)), ("compute_unit", .string(f.point.computeUnit)),
                ("entry", .string(f.point.entry)), ("error", .string(f.error)), ("stage_scales", stage(f.point)),
            ])
        }
        return .object([
            ("kind", .string(DeviceProfile.kind)), ("schema_version", .string(DeviceProfile.schemaVersion)),
            ("device_id", .string(deviceId)),
            ("facts", .object(facts.keys.sorted().map { ($0, JSONOut.string(facts[$0]!)) })),
            ("checkpoint_sha256", .string(checkpointSha256)),
            ("measurements", .array(ms)), ("failures", .array(fs)),
        ])
    }

    /// Atomic write (temporary file, then rename).
    public func write(to url: URL) throws {
        try json().write(to: url)
    }
}

/// Measures every operating point an engine serves: load, `warmup` untimed runs, `runs` timed runs (the clock
/// around `InferenceEngine.run` only), p50/p90/p99, achieved GFLOP/s = 2·MACs / p50, and energy per inference if an
/// `EnergyMeter` is given. A point that fails to load or run (or measures 0 ms or a non-finite time) is listed under
/// `failures` with its error. Numbers that are not finite and > 0 (gflops, energy) are written as null.
public final class BenchmarkRunner {
    public let engine: InferenceEngine
    public let clock: Clock
    public let energy: EnergyMeter?
    public let runs: Int
    public let warmup: Int
    /// Threads per runtime as the LUT records them (Core ML: 0, it does not say).
    public let threads: [String: Int]

    public init(engine: InferenceEngine, clock: Clock = SystemClock(), energy: EnergyMeter? = nil, runs: Int = 50,
                warmup: Int = 5, threads: [String: Int] = ["coreml": 0, "executorch": 4]) {
        precondition(runs >= 1 && warmup >= 0)
        self.engine = engine
        self.clock = clock
        self.energy = energy
        self.runs = runs
        self.warmup = warmup
        self.threads = threads
    }

    /// The runtime name the LUT uses for a backend.
    public static func runtime(_ backend: String) -> String {
        return backend == "onnx" ? "onnxruntime" : backend
    }

    /// `input` builds a point's input tensor and shape. `progress(done, total, point)` is called before each point.
    public func run(lut: Lut, deviceId: String, facts: [String: String], checkpointSha256: String,
                    input: (OperatingPoint) throws -> (values: [Float], shape: [Int]),
                    progress: ((Int, Int, OperatingPoint) -> Void)? = nil) throws -> DeviceProfile {
        guard DeviceProfile.isValidDeviceId(deviceId) else {
            throw FrameLoopError("device_id \"\(deviceId)\" must match [a-z0-9._-]+")
        }
        let points = lut.operatingPoints.filter { engine.backends.contains($0.backend) }
        var measurements: [Measurement] = []
        var failures: [BenchmarkFailure] = []
        for (n, op) in points.enumerated() {
            progress?(n, points.count, op)
            do {
                try engine.load(op)
                let (values, shape) = try input(op)
                for _ in 0..<warmup { _ = try engine.run(op, input: values, shape: shape) }
                var times: [Double] = []
                energy?.start()
                for _ in 0..<runs {
                    let t0 = clock.nowMs()
                    _ = try engine.run(op, input: values, shape: shape)
                    let t1 = clock.nowMs()
                    times.append(t1 - t0)
                }
                let mj = energy?.stop()
                guard times.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                    throw FrameLoopError("the clock gave a non-finite or negative time")
                }
                let p50 = percentile(times, 50)
                guard p50 > 0 else { throw FrameLoopError("measured 0 ms: the clock is too coarse for this entry") }
                // Interpolation is monotone in q up to rounding; keep p50 ≤ p90 ≤ p99 exactly.
                let p90 = max(percentile(times, 90), p50)
                let p99 = max(percentile(times, 99), p90)
                var perInference: Double? = nil
                if let total = mj, total.isFinite, total > 0 { perInference = total / Double(runs) }
                let gflops = 2 * Double(op.macs) / (p50 * 1e6)
                let runtime = BenchmarkRunner.runtime(op.backend)
                measurements.append(Measurement(
                    point: op, runtime: runtime, threads: threads[runtime] ?? 0, runs: runs, p50Ms: p50,
                    p90Ms: p90, p99Ms: p99, peakMemoryMb: nil,
                    gflops: gflops.isFinite && gflops > 0 ? gflops : nil, energyMj: perInference,
                    energyEstimated: perInference != nil && (energy?.estimated ?? false)))
            } catch {
                failures.append(BenchmarkFailure(point: op, error: "\(error)"))
            }
        }
        return DeviceProfile(deviceId: deviceId, facts: facts, checkpointSha256: checkpointSha256,
                             measurements: measurements, failures: failures)
    }
}
