import Foundation

/// A policy table that would make the selector inconsistent, or a policy file that is not one.
public struct PolicyError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// The app's budget plus the declarative table that tightens it; defaults and meaning as in the Python reference
/// (resflex.mobile.selector, module docstring). Thermal lists are indexed by the normalised level 0...3.
///
///     var policy = Policy()
///     policy.latencyBudgetMs = 20
///     let selector = try Selector(lut: lut, device: "phone", policy: policy)   // validates the policy
public struct Policy: Equatable {
    public static let kind = "resflex.selector_policy"
    public static let version = "1.0"
    public static let file = "selector_policy.json"

    public var latencyBudgetMs: Double = 33.0
    public var minTop1: Double = 0.0
    public var runtime: String? = nil
    public var threads: Int? = nil
    public var thermalBudget: [Double] = [1.0, 0.9, 0.75, 0.5]
    public var thermalCpuFactor: [Double] = [1.0, 1.1, 1.3, 1.6]
    public var batteryLow: Double = 0.2
    public var batteryCritical: Double = 0.1
    public var batteryLowBudget: Double = 0.85
    public var batteryCriticalBudget: Double = 0.6
    public var powerSaveBudget: Double = 0.8
    public var energySlackLow: Double = 0.02
    public var energySlackCritical: Double = 0.05
    public var energySlackPowerSave: Double = 0.02
    public var cpuLoadK: Double = 0.5
    public var acceleratorUnits: [String] = ["GPU", "NNAPI", "CPU_AND_GPU", "CPU_AND_NE", "ALL"]
    public var emaAlpha: Double = 0.3
    public var slowdownMin: Double = 0.5
    public var slowdownMax: Double = 4.0
    public var slowdownRelax: Double = 0.005
    public var throttleReport: Double = 1.2
    public var hysteresisFrames: Int = 5
    public var hysteresisMargin: Double = 0.1
    public var backoffMaxFrames: Int = 320
    public var missFrames: Int = 2
    public var probeWindowFrames: Int = 1800
    public var fallbackGmacsPerS: Double = 5.0
    public var unknownThermal: Int = 2

    public init() {}

    static let names = ["accelerator_units", "backoff_max_frames", "battery_critical", "battery_critical_budget",
                        "battery_low", "battery_low_budget", "cpu_load_k", "ema_alpha", "energy_slack_critical",
                        "energy_slack_low", "energy_slack_power_save", "fallback_gmacs_per_s", "hysteresis_frames",
                        "hysteresis_margin", "latency_budget_ms", "min_top1", "miss_frames", "power_save_budget",
                        "probe_window_frames", "runtime", "slowdown_max", "slowdown_min", "slowdown_relax", "thermal_budget", "thermal_cpu_factor",
                        "threads", "throttle_report", "unknown_thermal"]

    /// Refuse a table that would make the selector inconsistent (e.g. critical looser than low).
    public func validate(source: String = "policy") throws {
        func bad(_ field: String, _ value: Any, _ expected: String) -> PolicyError {
            return PolicyError("\(source): \(field) = \(value), expected \(expected)")
        }
        func number(_ field: String, _ v: Double, _ lo: Double, _ hi: Double, loOpen: Bool = false,
                    hiOpen: Bool = false) throws {
            if v.isNaN || (loOpen ? v <= lo : v < lo) || (hiOpen ? v >= hi : v > hi) {
                throw bad(field, v, "a number in \(loOpen ? "(" : "[")\(lo), \(hi)\(hiOpen ? ")" : "]")")
            }
        }
        func levels(_ field: String, _ v: [Double], _ lo: Double, _ hi: Double, _ order: Double) throws {
            var ok = v.count == 4
            for x in v where !(lo <= x && x <= hi) || (lo == 0.0 && x == 0.0) {
                ok = false
            }
            if !ok {
                throw bad(field, v, "4 numbers (normalised thermal levels 0..3) in \(lo == 0.0 ? "(0" : "[1"), \(hi)]")
            }
            for i in 0..<3 where (v[i + 1] - v[i]) * order < 0 {
                throw bad(field, v, order < 0 ? "non-increasing" : "non-decreasing from level 0 to 3")
            }
        }
        try number("latency_budget_ms", latencyBudgetMs, 0.0, 1e9, loOpen: true)
        try number("min_top1", minTop1, -1e9, 1e9)
        if let t = threads, t < 1 { throw bad("threads", t, "a positive integer or null") }
        try levels("thermal_budget", thermalBudget, 0.0, 1.0, -1)
        try levels("thermal_cpu_factor", thermalCpuFactor, 1.0, 1e6, 1)
        try number("battery_critical", batteryCritical, 0.0, 1.0)
        try number("battery_low", batteryLow, batteryCritical, 1.0)
        try number("battery_low_budget", batteryLowBudget, 0.0, 1.0, loOpen: true)
        try number("battery_critical_budget", batteryCriticalBudget, 0.0, batteryLowBudget, loOpen: true)
        try number("power_save_budget", powerSaveBudget, 0.0, 1.0, loOpen: true)
        try number("energy_slack_low", energySlackLow, 0.0, 1.0)
        try number("energy_slack_critical", energySlackCritical, energySlackLow, 1.0)
        try number("energy_slack_power_save", energySlackPowerSave, 0.0, 1.0)
        try number("cpu_load_k", cpuLoadK, 0.0, 1.0, hiOpen: true)
        try number("ema_alpha", emaAlpha, 0.0, 1.0, loOpen: true)
        try number("slowdown_min", slowdownMin, 0.0, 1.0, loOpen: true)
        try number("slowdown_max", slowdownMax, 1.0, 1e6)
        try number("slowdown_relax", slowdownRelax, 0.0, 1.0)
        try number("throttle_report", throttleReport, 1.0, 1e6)
        if hysteresisFrames < 1 { throw bad("hysteresis_frames", hysteresisFrames, "a positive integer") }
        if backoffMaxFrames < hysteresisFrames {
            throw bad("backoff_max_frames", backoffMaxFrames, "an integer ≥ hysteresis_frames")
        }
        if missFrames < 1 || missFrames > 1_000_000 {
            throw bad("miss_frames", missFrames, "a positive integer (at most 1000000)")
        }
        if probeWindowFrames < 1 || probeWindowFrames > 1_000_000_000 {
            throw bad("probe_window_frames", probeWindowFrames, "a positive integer (at most 1000000000)")
        }
        try number("hysteresis_margin", hysteresisMargin, 0.0, 1.0, hiOpen: true)
        try number("fallback_gmacs_per_s", fallbackGmacsPerS, 0.0, 1e9, loOpen: true)
        if unknownThermal < 0 || unknownThermal > 3 {
            throw bad("unknown_thermal", unknownThermal, "a normalised thermal level 0, 1, 2 or 3")
        }
    }

    /// A policy JSON document (any subset of the fields, over `base`), e.g. a bundle's selector_policy.json.
    public static func parse(_ data: Data, base: Policy = Policy(), source: String = Policy.file) throws -> Policy {
        return try fromJSON(try JSONValue.parse(data, source: source), base: base, source: source)
    }

    /// `base` with the fields present in `doc` replaced (JSON names as in Python); unknown fields are refused.
    public static func fromJSON(_ doc: JSONValue, base: Policy = Policy(), source: String = "policy") throws -> Policy {
        guard let data = doc.objectValue else { throw PolicyError("\(source): expected a JSON object of policy fields") }
        if let k = data["kind"], k.stringValue != kind { throw PolicyError("\(source): kind must be \(kind)") }
        if let v = data["schema_version"] {
            guard let s = v.stringValue, s.components(separatedBy: ".")[0] == version.components(separatedBy: ".")[0] else {
                throw PolicyError("\(source): schema_version \(v.text) is not supported (major "
                    + "\(version.components(separatedBy: ".")[0]))")
            }
        }
        let unknown = data.keys.filter { $0 != "kind" && $0 != "schema_version" && !names.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw PolicyError("\(source): unknown policy field(s) \(unknown); known: \(names.joined(separator: ", "))")
        }
        func fail(_ name: String, _ expected: String) -> SchemaError {
            return SchemaError("\(source): \(name) = \(data[name]?.text ?? "nothing"), expected \(expected)")
        }
        func double(_ name: String, _ current: Double) throws -> Double {
            guard let v = data[name] else { return current }
            guard let d = v.doubleValue else { throw fail(name, "a number") }
            return d
        }
        func int(_ name: String, _ current: Int) throws -> Int {
            guard let v = data[name] else { return current }
            guard let i = v.intValue else { throw fail(name, "an integer") }
            return i
        }
        func optInt(_ name: String, _ current: Int?) throws -> Int? {
            guard let v = data[name] else { return current }
            if v.isNull { return nil }
            guard let i = v.intValue else { throw fail(name, "an integer or null") }
            return i
        }
        func optString(_ name: String, _ current: String?) throws -> String? {
            guard let v = data[name] else { return current }
            if v.isNull { return nil }
            guard let s = v.stringValue else { throw fail(name, "a string or null") }
            return s
        }
        func doubles(_ name: String, _ current: [Double]) throws -> [Double] {
            guard let v = data[name] else { return current }
            guard let a = v.arrayValue else { throw fail(name, "a list of numbers") }
            var out: [Double] = []
            for x in a {
                guard let d = x.doubleValue else { throw fail(name, "a list of numbers") }
                out.append(d)
            }
            return out
        }
        func strings(_ name: String, _ current: [String]) throws -> [String] {
            guard let v = data[name] else { return current }
            guard let a = v.arrayValue else { throw fail(name, "a list of compute unit names") }
            var out: [String] = []
            for x in a {
                guard let s = x.stringValue else { throw fail(name, "a list of compute unit names") }
                out.append(s)
            }
            return out
        }
        var p = base
        p.latencyBudgetMs = try double("latency_budget_ms", p.latencyBudgetMs)
        p.minTop1 = try double("min_top1", p.minTop1)
        p.runtime = try optString("runtime", p.runtime)
        p.threads = try optInt("threads", p.threads)
        p.thermalBudget = try doubles("thermal_budget", p.thermalBudget)
        p.thermalCpuFactor = try doubles("thermal_cpu_factor", p.thermalCpuFactor)
        p.batteryLow = try double("battery_low", p.batteryLow)
        p.batteryCritical = try double("battery_critical", p.batteryCritical)
        p.batteryLowBudget = try double("battery_low_budget", p.batteryLowBudget)
        p.batteryCriticalBudget = try double("battery_critical_budget", p.batteryCriticalBudget)
        p.powerSaveBudget = try double("power_save_budget", p.powerSaveBudget)
        p.energySlackLow = try double("energy_slack_low", p.energySlackLow)
        p.energySlackCritical = try double("energy_slack_critical", p.energySlackCritical)
        p.energySlackPowerSave = try double("energy_slack_power_save", p.energySlackPowerSave)
        p.cpuLoadK = try double("cpu_load_k", p.cpuLoadK)
        p.acceleratorUnits = try strings("accelerator_units", p.acceleratorUnits)
        p.emaAlpha = try double("ema_alpha", p.emaAlpha)
        p.slowdownMin = try double("slowdown_min", p.slowdownMin)
        p.slowdownMax = try double("slowdown_max", p.slowdownMax)
        p.slowdownRelax = try double("slowdown_relax", p.slowdownRelax)
        p.throttleReport = try double("throttle_report", p.throttleReport)
        p.hysteresisFrames = try int("hysteresis_frames", p.hysteresisFrames)
        p.hysteresisMargin = try double("hysteresis_margin", p.hysteresisMargin)
        p.backoffMaxFrames = try int("backoff_max_frames", p.backoffMaxFrames)
        p.missFrames = try int("miss_frames", p.missFrames)
        p.probeWindowFrames = try int("probe_window_frames", p.probeWindowFrames)
        p.fallbackGmacsPerS = try double("fallback_gmacs_per_s", p.fallbackGmacsPerS)
        p.unknownThermal = try int("unknown_thermal", p.unknownThermal)
        try p.validate(source: source)
        return p
    }
}
