import Foundation
import ResflexSelector

/// The golden vectors shared by Python, Kotlin and Swift: byte-identical copies of tests/golden/*.json
/// (tests/test_golden_copies.py checks them).
public enum Golden {
    /// The bytes of one golden file, e.g. `Golden.data("selector_golden")`.
    public static func data(_ name: String) throws -> Data {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json") else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "golden file \(name).json is not a resource"])
        }
        return try Data(contentsOf: url)
    }
}

/// Reading selector_golden.json: its cases, its value encoding, device states and decision comparison (both test
/// targets replay it).
public enum GoldenSelector {
    public static func document() throws -> JSONValue {
        return try JSONValue.parse(Golden.data("selector_golden"))
    }

    /// The golden file's encoding: "NaN", "Infinity", "-Infinity" → doubles; JSON null → nil; else as is.
    public static func decode(_ value: JSONValue?) -> Any? {
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

    /// A case's optional compute_units: artifact file → the units manifest.json offers it on.
    public static func computeUnits(_ c: JSONValue) -> [String: [String]]? {
        guard let units = c["compute_units"]?.objectValue else { return nil }
        var out: [String: [String]] = [:]
        for (artifact, list) in units { out[artifact] = (list.arrayValue ?? []).compactMap { $0.stringValue } }
        return out
    }

    public static func state(_ s: JSONValue?) -> DeviceState {
        return DeviceState(battery: decode(s?["battery"]), charging: decode(s?["charging"]),
                           powerSave: decode(s?["power_save"]), thermal: decode(s?["thermal"]),
                           cpuLoad: decode(s?["cpu_load"]), thermalScale: decode(s?["thermal_scale"]))
    }

    /// Differences between a decision and a golden `expected` (empty when equal).
    public static func compare(_ d: Decision, _ want: JSONValue, reasons: [String]? = nil) -> [String] {
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
        // Unrounded within 1e-6 of the 6-decimal value: equal values differ by at most 5e-7.
        for (field, got) in [("predicted_ms", d.predictedMs), ("budget_ms", d.budgetMs)] {
            let expected = want[field]?.doubleValue ?? Double.nan
            if !(abs(got - expected) <= 1e-6) { problems.append("\(field) is \(got), expected \(expected)") }
        }
        return problems
    }
}
