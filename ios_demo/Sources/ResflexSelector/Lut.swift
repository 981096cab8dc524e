import Foundation

/// One measured entry of `operating_points[i].latency[device]` (only the fields the selector reads).
public struct LatencyEntry: Equatable {
    public let runtime: String
    public let threads: Int
    public let p50Ms: Double
    public let energyMj: Double?
}

/// One entry of `devices[device].latency_models`: ms = interceptMs + msPerGmac × GMACs.
public struct LatencyModel: Equatable {
    public let runtime: String
    public let precision: String
    public let computeUnit: String
    public let threads: Int
    public let interceptMs: Double
    public let msPerGmac: Double
}

/// What the selector chooses among: resolution × backend × precision × compute unit (× stage scales).
public struct OperatingPoint: Equatable {
    public let resolution: Int
    public let backend: String
    public let precision: String
    public let computeUnit: String
    public let stageScales: [Double]?
    public let artifact: String
    public let entry: String
    public let macs: Int
    public let top1: Double?
    public let latency: [String: [LatencyEntry]]
}

/// The lookup table of a bundle (lut.json), reduced to what the selector reads; other fields are ignored.
public struct Lut {
    public static let kind = "resflex.lut"
    public static let schemaMajor = "1"

    public let operatingPoints: [OperatingPoint]
    /// Device id → its latency models.
    public let latencyModels: [String: [LatencyModel]]

    public init(operatingPoints: [OperatingPoint], latencyModels: [String: [LatencyModel]]) {
        self.operatingPoints = operatingPoints
        self.latencyModels = latencyModels
    }

    /// Parse the bytes of a lut.json; `source` names it in error messages.
    public static func parse(_ data: Data, source: String = "lut.json") throws -> Lut {
        return try fromJSON(try JSONValue.parse(data, source: source), source: source)
    }

    public static func read(_ url: URL) throws -> Lut {
        return try parse(try Document.read(url.path, name: url.path), source: url.path)
    }

    public static func fromJSON(_ doc: JSONValue, source: String = "lut.json") throws -> Lut {
        let top = try Fields(doc, source)
        guard top.fields["kind"]?.stringValue == kind else {
            throw SchemaError("\(source): kind is \(top.fields["kind"]?.text ?? "nothing"), expected \(kind)")
        }
        guard let version = top.fields["schema_version"]?.stringValue, SchemaRules.isVersion(version) else {
            throw SchemaError("\(source): schema_version \(top.fields["schema_version"]?.text ?? "nothing") is not "
                + "supported by this reader (expected \"\(schemaMajor).MINOR\", major \(schemaMajor))")
        }
        var models: [String: [LatencyModel]] = [:]
        if let devices = try top.optObject("devices") {
            for name in devices.keys.sorted() {
                models[name] = try device(Fields(devices[name], "\(source): devices.\(name)"))
            }
        }
        guard let rawPoints = top.raw("operating_points")?.arrayValue else { throw top.fail("operating_points", "a list") }
        var points: [OperatingPoint] = []
        var keys: [PointKey: Int] = [:]
        for (i, raw) in rawPoints.enumerated() {
            let location = "\(source): operating_points[\(i)]"
            let p = try point(Fields(raw, location))
            let key = PointKey(p)
            if let first = keys[key] {
                throw SchemaError("\(location): duplicate operating point (\(key.text)), the same as "
                    + "operating_points[\(first)]")
            }
            keys[key] = i
            for device in p.latency.keys.sorted() where models[device] == nil {
                throw SchemaError("\(location).latency: device \(device) is not in devices")
            }
            points.append(p)
        }
        return Lut(operatingPoints: points, latencyModels: models)
    }

    /// devices[name]: its latency models (kept), switch costs and GEMM peak (only checked).
    private static func device(_ device: Fields) throws -> [LatencyModel] {
        _ = try device.optDouble("gemm_peak_gflops", SchemaRules.positive)
        var list: [LatencyModel] = []
        var seen: [String: Int] = [:]
        for (j, rawModel) in (try device.optArray("latency_models") ?? []).enumerated() {
            let m = try Fields(rawModel, "\(device.location).latency_models[\(j)]")
            let model = try LatencyModel(runtime: m.string("runtime"), precision: m.string("precision"),
                                         computeUnit: m.string("compute_unit"),
                                         threads: m.int("threads", SchemaRules.threads),
                                         interceptMs: m.double("intercept_ms", SchemaRules.any),
                                         msPerGmac: m.double("ms_per_gmac", SchemaRules.any))
            _ = try m.optDouble("mean_abs_rel_error", SchemaRules.nonNegative)
            _ = try m.optInt("points", SchemaRules.count)
            let key = "\(model.runtime), \(model.precision), \(model.computeUnit), \(model.threads)"
            if let first = seen[key] {
                throw SchemaError("\(m.location): duplicate (runtime, precision, compute unit, threads) (\(key)), the "
                    + "same as latency_models[\(first)]")
            }
            seen[key] = j
            list.append(model)
        }
        var seenCosts: [String: Int] = [:]
        for (j, rawCost) in (try device.optArray("switch_costs") ?? []).enumerated() {
            let c = try Fields(rawCost, "\(device.location).switch_costs[\(j)]")
            for name in ["switch_loaded_ms", "switch_first_ms", "load_file_ms", "steady_ms"] {
                _ = try c.optDouble(name, SchemaRules.nonNegative)
            }
            let key = "\(try c.string("runtime")), \(try c.string("precision"))"
            if let first = seenCosts[key] {
                throw SchemaError("\(c.location): duplicate (runtime, precision) (\(key)), the same as "
                    + "switch_costs[\(first)]")
            }
            seenCosts[key] = j
        }
        return list
    }

    private static func point(_ f: Fields) throws -> OperatingPoint {
        var latency: [String: [LatencyEntry]] = [:]
        if let byDevice = try f.optObject("latency") {
            for name in byDevice.keys.sorted() {
                guard let entries = byDevice[name]?.arrayValue else {
                    throw SchemaError("\(f.location).latency.\(name): expected a list")
                }
                var list: [LatencyEntry] = []
                var seen: [String: Int] = [:]
                for (j, rawEntry) in entries.enumerated() {
                    let e = try Fields(rawEntry, "\(f.location).latency.\(name)[\(j)]")
                    let entry = try latencyEntry(e)
                    let key = "\(entry.runtime), \(entry.threads)"
                    if let first = seen[key] {
                        throw SchemaError("\(e.location): duplicate (runtime, threads) (\(key)), the same as [\(first)]")
                    }
                    seen[key] = j
                    list.append(entry)
                }
                latency[name] = list
            }
        }
        var scales: [Double]? = nil
        if try f.optArray("stage_scales") != nil {
            scales = try f.numbers("stage_scales", SchemaRules.positive)
        }
        _ = try f.optInt("params", SchemaRules.count)
        _ = try f.optInt("artifact_bytes", SchemaRules.nonNegative)
        _ = try f.optInt("artifact_resolutions", SchemaRules.count)
        if let data = try f.optObject("top1_data") {
            _ = try Fields(.object(data), "\(f.location).top1_data").optInt("samples", SchemaRules.count)
        }
        return try OperatingPoint(resolution: f.int("resolution", SchemaRules.resolution), backend: f.string("backend"),
                                  precision: f.string("precision"), computeUnit: f.string("compute_unit"),
                                  stageScales: scales, artifact: f.string("artifact", SchemaRules.path),
                                  entry: f.string("entry", SchemaRules.entryName),
                                  macs: f.int("macs", SchemaRules.count), top1: f.optDouble("top1", SchemaRules.fraction),
                                  latency: latency)
    }

    /// One latency measurement: the fields the selector keeps, and the ranges of the others.
    private static func latencyEntry(_ e: Fields) throws -> LatencyEntry {
        let p50 = try e.double("p50_ms", SchemaRules.positive)
        let p90 = try e.optDouble("p90_ms", SchemaRules.positive)
        let p99 = try e.optDouble("p99_ms", SchemaRules.positive)
        if p50 > (p90 ?? p50) || p50 > (p99 ?? p50) || (p90 ?? p50) > (p99 ?? .infinity) {
            throw SchemaError("\(e.location): expected p50 ≤ p90 ≤ p99, got \(p50), "
                + "\(p90.map { String($0) } ?? "null"), \(p99.map { String($0) } ?? "null")")
        }
        _ = try e.optInt("runs", SchemaRules.count)
        _ = try e.optDouble("peak_memory_mb", SchemaRules.nonNegative)
        _ = try e.optDouble("gflops", SchemaRules.nonNegative)
        return try LatencyEntry(runtime: e.string("runtime"), threads: e.int("threads", SchemaRules.threads), p50Ms: p50,
                                energyMj: e.optDouble("energy_mj", SchemaRules.nonNegative))
    }
}

/// An operating point's key (schema.py `OperatingPoint.key`): no stage scales and [] are the same.
private struct PointKey: Hashable {
    let resolution: Int
    let backend: String
    let precision: String
    let computeUnit: String
    let stageScales: [Double]

    init(_ p: OperatingPoint) {
        resolution = p.resolution
        backend = p.backend
        precision = p.precision
        computeUnit = p.computeUnit
        stageScales = p.stageScales ?? []
    }

    var text: String {
        return "\(resolution), \(backend), \(precision), \(computeUnit)" + (stageScales.isEmpty ? "" : ", \(stageScales)")
    }
}

/// The ranges of the bundle schema, as `RULES` in mobile/bundle/schema.py defines them (that table is the one place;
/// this is its copy for the Swift readers, `Lut` here and `Manifest` in ResflexCore): every number finite, every
/// integer within ±(2^53 − 1), `schema_version` "1.MINOR", and per field a minimum / exclusive minimum / maximum, a
/// pattern (sha256, entry name) or a safe relative path.
public enum SchemaRules {
    /// 2^53 − 1: integers every reader (Python, a Kotlin Long, a Swift Int, a double) holds exactly.
    public static let maxInt = 9_007_199_254_740_991

    /// What a value must satisfy beyond its type (schema.py `Rule`).
    /// A pattern a string field must match.
    public enum Pattern: Sendable {
        case sha256, name

        public func matches(_ s: String) -> Bool {
            switch self {
            case .sha256: return SchemaRules.isSha256(s)
            case .name: return SchemaRules.isName(s)
            }
        }

        /// The regular expression of schema.py (for messages).
        public var regex: String {
            switch self {
            case .sha256: return "^[0-9a-f]{64}$"
            case .name: return "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
            }
        }
    }

    public struct Rule: Sendable {
        public var minimum: Double? = nil
        public var exclusiveMinimum: Double? = nil
        public var maximum: Double? = nil
        public var pattern: Pattern? = nil
        /// A safe relative path inside the bundle (`pathProblem`).
        public var path = false

        /// nil when `v` is in range, else the problem ("-1 is out of range (expected ≥ 1 and ≤ 65536)").
        public func problem(_ v: Double, text: String? = nil) -> String? {
            if v.isNaN || (minimum.map { v < $0 } ?? false) || (maximum.map { v > $0 } ?? false)
                || (exclusiveMinimum.map { v <= $0 } ?? false) {
                return "\(text ?? SchemaRules.format(v)) is out of range (expected \(expected))"
            }
            return nil
        }

        /// nil when `s` follows the pattern / path rule, else the problem.
        public func problem(_ s: String) -> String? {
            if let pattern = pattern, !pattern.matches(s) { return "\"\(s)\" does not match \(pattern.regex)" }
            if path { return SchemaRules.pathProblem(s) }
            return nil
        }

        public var expected: String {
            var parts: [String] = []
            if let x = exclusiveMinimum { parts.append("> \(SchemaRules.format(x))") }
            else if let x = minimum { parts.append("≥ \(SchemaRules.format(x))") }
            if let x = maximum { parts.append("≤ \(SchemaRules.format(x))") }
            return parts.joined(separator: " and ")
        }
    }

    public static let positive = Rule(exclusiveMinimum: 0)
    public static let nonNegative = Rule(minimum: 0)
    public static let fraction = Rule(minimum: 0, maximum: 1)
    public static let count = Rule(minimum: 1)
    public static let sha256 = Rule(pattern: .sha256)
    public static let entryName = Rule(pattern: .name)
    public static let resolution = Rule(minimum: 1, maximum: 65536)
    /// 0: the runtime's own choice (Core ML).
    public static let threads = Rule(minimum: 0, maximum: 4096)
    public static let path = Rule(path: true)
    /// Only finite (as every number).
    public static let any = Rule()

    private static func ascii(_ s: String, _ allowed: (UInt8) -> Bool) -> Bool {
        return s.utf8.allSatisfy(allowed)
    }

    private static func digit(_ c: UInt8) -> Bool { return c >= 48 && c <= 57 }

    /// ^1\.\d+$ (ASCII digits).
    public static func isVersion(_ s: String) -> Bool {
        let b = Array(s.utf8)
        return b.count >= 3 && b[0] == 49 && b[1] == 46 && b[2...].allSatisfy(digit)
    }

    /// ^[0-9a-f]{64}$
    public static func isSha256(_ s: String) -> Bool {
        return s.utf8.count == 64 && ascii(s) { digit($0) || ($0 >= 97 && $0 <= 102) }
    }

    /// ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$: an entry (method / function / signature / file name in its folder).
    public static func isName(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func word(_ c: UInt8) -> Bool { return digit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
        return !b.isEmpty && b.count <= 128 && word(b[0]) && b.allSatisfy { word($0) || $0 == 46 || $0 == 45 }
    }

    /// schema.py `safe_relpath`: relative, POSIX, canonical (no '.', '..' or empty parts, no trailing '/'), not
    /// starting with '~', no control characters. nil when safe, else the problem.
    public static func pathProblem(_ path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let bad = path.isEmpty || path.contains("\\") || path.hasPrefix("/") || path.hasPrefix("~")
            || path.unicodeScalars.contains { $0.value < 32 || $0.value == 0x7f }
            || parts.contains { $0.isEmpty || $0 == "." || $0 == ".." }
        return bad ? "\"\(path)\" is not a safe relative path inside the bundle (no absolute paths, no '..' or '.', "
            + "POSIX separators, no control characters)" : nil
    }

    /// An integral double without ".0" (bounds and integers in messages).
    public static func format(_ v: Double) -> String {
        if v.isFinite && v == v.rounded() && abs(v) <= Double(maxInt) { return String(Int(v)) }
        return String(v)
    }
}

/// Typed access with the ranges of `SchemaRules` (numbers finite, integers within ±(2^53 − 1)); errors name the
/// document and the field path.
extension Fields {
    private func problem(_ name: String, _ problem: String) -> SchemaError {
        return SchemaError("\(location).\(name): \(problem)")
    }

    /// A finite number (an integer within ±(2^53 − 1), or a finite double); nil for anything else.
    static func finite(_ v: JSONValue) -> Double? {
        switch v {
        case .int(let i): return i > SchemaRules.maxInt || i < -SchemaRules.maxInt ? nil : Double(i)
        case .double(let d): return d.isFinite ? d : nil
        default: return nil
        }
    }

    /// Why `v` is not a finite number / an integer within range.
    static func whyNot(_ v: JSONValue, integer: Bool) -> String {
        switch v {
        case .int: return "\(v.text) is out of range (integers are at most 2^53 − 1)"
        case .double: return integer ? "expected an integer, got \(v.text)" : "expected a finite number, got \(v.text)"
        default: return "expected \(integer ? "an integer" : "a number"), got \(v.text)"
        }
    }

    public func int(_ name: String, _ rule: SchemaRules.Rule) throws -> Int {
        guard let v = raw(name), let i = v.intValue else { throw fail(name, "an integer") }
        if i > SchemaRules.maxInt || i < -SchemaRules.maxInt { throw problem(name, Fields.whyNot(v, integer: true)) }
        if let p = rule.problem(Double(i), text: String(i)) { throw problem(name, p) }
        return i
    }

    public func optInt(_ name: String, _ rule: SchemaRules.Rule) throws -> Int? {
        return raw(name) == nil ? nil : try int(name, rule)
    }

    public func double(_ name: String, _ rule: SchemaRules.Rule) throws -> Double {
        guard let v = raw(name), v.doubleValue != nil else { throw fail(name, "a number") }
        guard let d = Fields.finite(v) else { throw problem(name, Fields.whyNot(v, integer: false)) }
        if let p = rule.problem(d) { throw problem(name, p) }
        return d
    }

    public func optDouble(_ name: String, _ rule: SchemaRules.Rule) throws -> Double? {
        guard let v = raw(name) else { return nil }
        if v.doubleValue == nil { throw fail(name, "a number or null") }
        return try double(name, rule)
    }

    public func string(_ name: String, _ rule: SchemaRules.Rule) throws -> String {
        let s = try string(name)
        if let p = rule.problem(s) { throw problem(name, p) }
        return s
    }

    /// A list of finite numbers, each within `rule`; errors name the item (`std[1]`).
    public func numbers(_ name: String, _ rule: SchemaRules.Rule) throws -> [Double] {
        guard let a = raw(name)?.arrayValue else { throw fail(name, "a list") }
        var out: [Double] = []
        for (i, v) in a.enumerated() {
            guard v.doubleValue != nil else { throw problem("\(name)[\(i)]", "expected a number, got \(v.text)") }
            guard let d = Fields.finite(v) else { throw problem("\(name)[\(i)]", Fields.whyNot(v, integer: false)) }
            if let p = rule.problem(d) { throw problem("\(name)[\(i)]", p) }
            out.append(d)
        }
        return out
    }

    /// A list of integers, each within `rule`; with `unique`, none repeated.
    public func integers(_ name: String, _ rule: SchemaRules.Rule, unique: Bool = false) throws -> [Int] {
        return try Fields.integers(raw(name), at: "\(location).\(name)", rule, unique: unique)
    }

    /// The list `value` (its field path `at`, for errors) as integers, each within `rule`; with `unique`, none
    /// repeated. For a document's top-level lists: `Fields.integers(top.raw("resolutions"), at: "manifest.json:
    /// resolutions", …)`.
    public static func integers(_ value: JSONValue?, at path: String, _ rule: SchemaRules.Rule,
                                unique: Bool = false) throws -> [Int] {
        guard let a = value?.arrayValue else {
            throw SchemaError("\(path): expected a list, got \(value?.text ?? "nothing")")
        }
        var out: [Int] = []
        for (i, v) in a.enumerated() {
            let at = "\(path)[\(i)]"
            guard let n = v.intValue else { throw SchemaError("\(at): expected an integer, got \(v.text)") }
            if n > SchemaRules.maxInt || n < -SchemaRules.maxInt {
                throw SchemaError("\(at): \(Fields.whyNot(v, integer: true))")
            }
            if let p = rule.problem(Double(n), text: String(n)) { throw SchemaError("\(at): \(p)") }
            if unique, let first = out.firstIndex(of: n) {
                throw SchemaError("\(at): repeated value \(n); each may appear once (also [\(first)])")
            }
            out.append(n)
        }
        return out
    }
}
