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
        let doc: JSONValue
        do {
            doc = try JSONValue.parse(data)
        } catch {
            throw SchemaError("\(source): not valid JSON: \(error)")
        }
        return try fromJSON(doc, source: source)
    }

    public static func read(_ url: URL) throws -> Lut {
        guard let data = try? Data(contentsOf: url) else { throw SchemaError("\(url.path): file not found") }
        return try parse(data, source: url.path)
    }

    public static func fromJSON(_ doc: JSONValue, source: String = "lut.json") throws -> Lut {
        let top = try Fields(doc, source)
        guard top.fields["kind"]?.stringValue == kind else {
            throw SchemaError("\(source): kind is \(top.fields["kind"]?.text ?? "nothing"), expected \(kind)")
        }
        guard let version = top.fields["schema_version"]?.stringValue,
              version.components(separatedBy: ".")[0] == schemaMajor else {
            throw SchemaError("\(source): schema_version \(top.fields["schema_version"]?.text ?? "nothing") is not "
                + "supported by this reader (major \(schemaMajor))")
        }
        guard let rawPoints = top.raw("operating_points")?.arrayValue else { throw top.fail("operating_points", "a list") }
        var points: [OperatingPoint] = []
        for (i, raw) in rawPoints.enumerated() {
            try points.append(point(Fields(raw, "\(source): operating_points[\(i)]")))
        }
        var models: [String: [LatencyModel]] = [:]
        if let devices = try top.optObject("devices") {
            for (name, raw) in devices {
                let device = try Fields(raw, "\(source): devices.\(name)")
                var list: [LatencyModel] = []
                let rawModels = try device.optArray("latency_models") ?? []
                for (j, rawModel) in rawModels.enumerated() {
                    let m = try Fields(rawModel, "\(device.location).latency_models[\(j)]")
                    try list.append(LatencyModel(runtime: m.string("runtime"), precision: m.string("precision"),
                                                 computeUnit: m.string("compute_unit"), threads: m.int("threads"),
                                                 interceptMs: m.double("intercept_ms"),
                                                 msPerGmac: m.double("ms_per_gmac")))
                }
                models[name] = list
            }
        }
        return Lut(operatingPoints: points, latencyModels: models)
    }

    private static func point(_ f: Fields) throws -> OperatingPoint {
        var latency: [String: [LatencyEntry]] = [:]
        if let byDevice = try f.optObject("latency") {
            for (name, raw) in byDevice {
                guard let entries = raw.arrayValue else { throw SchemaError("\(f.location).latency.\(name): expected a list") }
                var list: [LatencyEntry] = []
                for (j, rawEntry) in entries.enumerated() {
                    let e = try Fields(rawEntry, "\(f.location).latency.\(name)[\(j)]")
                    try list.append(LatencyEntry(runtime: e.string("runtime"), threads: e.int("threads"),
                                                 p50Ms: e.double("p50_ms"), energyMj: e.optDouble("energy_mj")))
                }
                latency[name] = list
            }
        }
        var scales: [Double]? = nil
        if let rawScales = try f.optArray("stage_scales") {
            var list: [Double] = []
            for (j, v) in rawScales.enumerated() {
                guard let d = v.doubleValue else {
                    throw SchemaError("\(f.location).stage_scales[\(j)]: expected a number, got \(v.text)")
                }
                list.append(d)
            }
            scales = list
        }
        return try OperatingPoint(resolution: f.int("resolution"), backend: f.string("backend"),
                                  precision: f.string("precision"), computeUnit: f.string("compute_unit"),
                                  stageScales: scales, artifact: f.string("artifact"), entry: f.string("entry"),
                                  macs: f.int("macs"), top1: f.optDouble("top1"), latency: latency)
    }
}
