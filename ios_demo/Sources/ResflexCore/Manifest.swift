import Foundation
import ResflexSelector

/// The tensor layout an artifact expects (batch 1, flattened row-major).
public enum Layout: String {
    case nchw = "NCHW"
    case nhwc = "NHWC"
}

/// How an app turns a camera frame into the input of one resolution (manifest.json `inputs[]`).
public struct InputSpec: Equatable {
    public var resolution: Int
    public var resizeShorterTo: Int
    public var crop: Int
    public var mean: [Double]
    public var std: [Double]
    public var interpolation: String
    public var valueRange: String

    public init(resolution: Int, resizeShorterTo: Int, crop: Int, mean: [Double], std: [Double],
                interpolation: String = "bilinear_antialias", valueRange: String = "RGB in [0, 1] before mean/std") {
        self.resolution = resolution
        self.resizeShorterTo = resizeShorterTo
        self.crop = crop
        self.mean = mean
        self.std = std
        self.interpolation = interpolation
        self.valueRange = valueRange
    }
}

/// One resolution inside an artifact: ExecuTorch method, Core ML function, TFLite signature or file.
public struct EntryInfo: Equatable {
    public let resolution: Int
    public let name: String
    public let inputName: String
    public let outputName: String
    public let inputShape: [Int]
}

public struct FileRef: Equatable {
    public let file: String
    public let sha256: String
    public let bytes: Int
}

public struct ArtifactInfo: Equatable {
    public let backend: String
    public let precision: String
    /// Relative to the bundle (a file, or a folder such as a .mlpackage).
    public let file: String
    public let sha256: String
    public let bytes: Int
    public let layout: Layout
    public let entries: [EntryInfo]
    public let runsOnHost: Bool
    public let extraFiles: [FileRef]

    public func entry(named name: String) -> EntryInfo? {
        return entries.first { $0.name == name }
    }
}

public struct ModelInfo: Equatable {
    public let arch: String
    public let method: String
    public let numClasses: Int
    public let trainResolutions: [Int]
    public let classNames: [String]
    public let checkpointSha256: String
}

/// manifest.json, reduced to what an app reads (fields it does not read are ignored). Format: mobile/bundle/schema.py
/// (`Manifest`) and mobile/bundle/jsonschema/manifest.schema.json.
public struct Manifest: Equatable {
    public static let kind = "resflex.manifest"
    public static let schemaMajor = "1"
    public static let file = "manifest.json"

    public let model: ModelInfo
    public let resolutions: [Int]
    public let inputs: [InputSpec]
    public let artifacts: [ArtifactInfo]

    public func input(resolution: Int) -> InputSpec? {
        return inputs.first { $0.resolution == resolution }
    }

    /// The artifact whose (main) file is `file`, e.g. an operating point's `artifact`.
    public func artifact(file: String) -> ArtifactInfo? {
        return artifacts.first { $0.file == file }
    }

    public static func parse(_ data: Data, source: String = Manifest.file) throws -> Manifest {
        let doc: JSONValue
        do {
            doc = try JSONValue.parse(data)
        } catch {
            throw SchemaError("\(source): not valid JSON: \(error)")
        }
        return try fromJSON(doc, source: source)
    }

    public static func fromJSON(_ doc: JSONValue, source: String = Manifest.file) throws -> Manifest {
        let top = try Fields(doc, source)
        guard top.fields["kind"]?.stringValue == kind else {
            throw SchemaError("\(source): kind is \(top.fields["kind"]?.text ?? "nothing"), expected \(kind)")
        }
        guard let version = top.fields["schema_version"]?.stringValue,
              version.components(separatedBy: ".")[0] == schemaMajor else {
            throw SchemaError("\(source): schema_version \(top.fields["schema_version"]?.text ?? "nothing") is not "
                + "supported by this reader (major \(schemaMajor))")
        }
        let m = try Fields(top.raw("model"), "\(source): model")
        let model = try ModelInfo(arch: m.string("arch"), method: m.string("method"), numClasses: m.int("num_classes"),
                                  trainResolutions: ints(m, "train_resolutions"),
                                  classNames: strings(m, "class_names"),
                                  checkpointSha256: m.string("checkpoint_sha256"))
        var inputs: [InputSpec] = []
        for (i, raw) in try list(top, "inputs").enumerated() {
            let f = try Fields(raw, "\(source): inputs[\(i)]")
            let mean = try doubles(f, "mean")
            let std = try doubles(f, "std")
            if mean.count != 3 { throw f.fail("mean", "3 numbers (R, G, B)") }
            if std.count != 3 || std.contains(where: { !($0 > 0) || !$0.isFinite }) {
                throw f.fail("std", "3 positive numbers (R, G, B)")
            }
            let spec = try InputSpec(resolution: f.int("resolution"), resizeShorterTo: f.int("resize_shorter_to"),
                                     crop: f.int("crop"), mean: mean, std: std,
                                     interpolation: f.raw("interpolation")?.stringValue ?? "bilinear",
                                     valueRange: f.raw("value_range")?.stringValue ?? "RGB in [0, 1] before mean/std")
            if spec.crop < 1 || spec.resizeShorterTo < spec.crop {
                throw f.fail("crop", "a positive size ≤ resize_shorter_to")
            }
            inputs.append(spec)
        }
        var artifacts: [ArtifactInfo] = []
        for (i, raw) in try list(top, "artifacts").enumerated() {
            let f = try Fields(raw, "\(source): artifacts[\(i)]")
            let layoutText = try f.string("layout")
            guard let layout = Layout(rawValue: layoutText) else { throw f.fail("layout", "\"NCHW\" or \"NHWC\"") }
            var entries: [EntryInfo] = []
            for (j, rawEntry) in try list(f, "entries").enumerated() {
                let e = try Fields(rawEntry, "\(f.location).entries[\(j)]")
                try entries.append(EntryInfo(resolution: e.int("resolution"), name: e.string("name"),
                                             inputName: e.string("input_name"), outputName: e.string("output_name"),
                                             inputShape: ints(e, "input_shape")))
            }
            var extra: [FileRef] = []
            for (j, rawRef) in (try f.optArray("extra_files") ?? []).enumerated() {
                let r = try Fields(rawRef, "\(f.location).extra_files[\(j)]")
                try extra.append(FileRef(file: r.string("file"), sha256: r.string("sha256"), bytes: r.int("bytes")))
            }
            guard case .bool(let runsOnHost)? = f.raw("runs_on_host") else { throw f.fail("runs_on_host", "true or false") }
            try artifacts.append(ArtifactInfo(backend: f.string("backend"), precision: f.string("precision"),
                                              file: f.string("file"), sha256: f.string("sha256"), bytes: f.int("bytes"),
                                              layout: layout, entries: entries, runsOnHost: runsOnHost,
                                              extraFiles: extra))
        }
        return Manifest(model: model, resolutions: try ints(top, "resolutions"), inputs: inputs, artifacts: artifacts)
    }

    private static func list(_ f: Fields, _ name: String) throws -> [JSONValue] {
        guard let a = f.raw(name)?.arrayValue else { throw f.fail(name, "a list") }
        return a
    }

    private static func ints(_ f: Fields, _ name: String) throws -> [Int] {
        var out: [Int] = []
        for v in try list(f, name) {
            guard let i = v.intValue else { throw f.fail(name, "a list of integers") }
            out.append(i)
        }
        return out
    }

    private static func doubles(_ f: Fields, _ name: String) throws -> [Double] {
        var out: [Double] = []
        for v in try list(f, name) {
            guard let d = v.doubleValue else { throw f.fail(name, "a list of numbers") }
            out.append(d)
        }
        return out
    }

    private static func strings(_ f: Fields, _ name: String) throws -> [String] {
        var out: [String] = []
        for v in try list(f, name) {
            guard let s = v.stringValue else { throw f.fail(name, "a list of strings") }
            out.append(s)
        }
        return out
    }
}
