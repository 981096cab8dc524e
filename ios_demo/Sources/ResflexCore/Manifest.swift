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
    /// Resizable Networks: one factor per stage (several entries may share a resolution); nil otherwise.
    public var stageScales: [Double]? = nil
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
    /// The units the LUT may offer its entries on (nil: all its backend's); TFLite int8's CPU-only one: ["CPU"].
    public var computeUnits: [String]? = nil

    /// Where an artifact of each backend can run (schema.py COMPUTE_UNITS).
    public static let units: [String: [String]] = [
        "executorch": ["XNNPACK"], "coreml": ["CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"],
        "tflite": ["CPU", "GPU", "NNAPI"], "onnx": ["CPUExecutionProvider"]]

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
        return try fromJSON(try JSONValue.parse(data, source: source), source: source)
    }

    /// manifest.json files reserved for the bundle's own documents (schema.py RESERVED_FILES).
    public static let reserved = ["manifest.json", "lut.json", "selector_policy.json"]

    /// Read and check a manifest.json: types, the ranges of mobile/bundle/schema.py `RULES` (`SchemaRules`) and its
    /// checks across fields (unique resolutions, inputs, files and entries; an ONNX entry names a file of its artifact).
    public static func fromJSON(_ doc: JSONValue, source: String = Manifest.file) throws -> Manifest {
        let top = try Fields(doc, source)
        guard top.fields["kind"]?.stringValue == kind else {
            throw SchemaError("\(source): kind is \(top.fields["kind"]?.text ?? "nothing"), expected \(kind)")
        }
        guard let version = top.fields["schema_version"]?.stringValue, SchemaRules.isVersion(version) else {
            throw SchemaError("\(source): schema_version \(top.fields["schema_version"]?.text ?? "nothing") is not "
                + "supported by this reader (expected \"\(schemaMajor).MINOR\", major \(schemaMajor))")
        }
        let m = try Fields(top.raw("model"), "\(source): model")
        _ = try m.optDouble("width", SchemaRules.positive)
        let model = try ModelInfo(arch: m.string("arch"), method: m.string("method"),
                                  numClasses: m.int("num_classes", SchemaRules.count),
                                  trainResolutions: m.integers("train_resolutions", SchemaRules.resolution, unique: true),
                                  classNames: strings(m, "class_names"),
                                  checkpointSha256: m.string("checkpoint_sha256", SchemaRules.sha256))
        var inputs: [InputSpec] = []
        for (i, raw) in try list(top, "inputs").enumerated() {
            let f = try Fields(raw, "\(source): inputs[\(i)]")
            let mean = try f.numbers("mean", SchemaRules.any)
            let std = try f.numbers("std", SchemaRules.positive)
            if mean.count != 3 { throw f.fail("mean", "3 numbers (R, G, B)") }
            if std.count != 3 { throw f.fail("std", "3 positive numbers (R, G, B)") }
            let spec = try InputSpec(resolution: f.int("resolution", SchemaRules.resolution),
                                     resizeShorterTo: f.int("resize_shorter_to", SchemaRules.resolution),
                                     crop: f.int("crop", SchemaRules.resolution), mean: mean, std: std,
                                     interpolation: f.raw("interpolation")?.stringValue ?? "bilinear",
                                     valueRange: f.raw("value_range")?.stringValue ?? "RGB in [0, 1] before mean/std")
            if spec.resizeShorterTo < spec.crop {
                throw f.fail("crop", "a positive size ≤ resize_shorter_to")
            }
            if let first = inputs.firstIndex(where: { $0.resolution == spec.resolution }) {
                throw SchemaError("\(f.location).resolution: duplicate input resolution \(spec.resolution) (also "
                    + "inputs[\(first)])")
            }
            inputs.append(spec)
        }
        var artifacts: [ArtifactInfo] = []
        var files: [String: String] = [:]
        for (i, raw) in try list(top, "artifacts").enumerated() {
            let f = try Fields(raw, "\(source): artifacts[\(i)]")
            let a = try artifact(f)
            let own = [a.file] + a.extraFiles.map { $0.file }
            for (k, file) in own.enumerated() {
                let field = k == 0 ? "\(f.location).file" : "\(f.location).extra_files[\(k - 1)].file"
                if reserved.contains(file) {
                    throw SchemaError("\(field): \"\(file)\" is reserved for the bundle's own documents")
                }
                if let first = files[file] { throw SchemaError("\(field): duplicate artifact file \"\(file)\" (also \(first))") }
                files[file] = field.replacingOccurrences(of: "\(source): ", with: "")
            }
            for (j, e) in a.entries.enumerated() {
                if let k = a.entries[..<j].firstIndex(where: { $0.name == e.name }) {
                    throw SchemaError("\(f.location).entries[\(j)].name: duplicate entry name \(e.name) (also entries[\(k)])")
                }
                if let k = a.entries[..<j].firstIndex(where: {
                    $0.resolution == e.resolution && ($0.stageScales ?? []) == (e.stageScales ?? [])
                }) {
                    throw SchemaError("\(f.location).entries[\(j)].resolution: duplicate entry (resolution, stage scales) "
                        + "\(e.resolution)\(e.stageScales.map { " \($0)" } ?? "") (also entries[\(k)])")
                }
                if let path = entryFile(a, e.name), !own.contains(path) {
                    throw SchemaError("\(f.location).entries[\(j)].name: \"\(e.name)\" names the file \"\(path)\", which "
                        + "is not this artifact's file or one of its extra_files (each listed with a sha256)")
                }
            }
            artifacts.append(a)
        }
        let resolutions = try Fields.integers(top.raw("resolutions"), at: "\(source): resolutions", SchemaRules.resolution,
                                              unique: true)
        return Manifest(model: model, resolutions: resolutions, inputs: inputs, artifacts: artifacts)
    }

    /// The bundle-relative file an entry names, for backends whose entries are files (ONNX); nil otherwise.
    public static func entryFile(_ artifact: ArtifactInfo, _ name: String) -> String? {
        guard artifact.backend == "onnx" else { return nil }
        guard let slash = artifact.file.lastIndex(of: "/") else { return name }
        return String(artifact.file[...slash]) + name
    }

    private static func artifact(_ f: Fields) throws -> ArtifactInfo {
        let layoutText = try f.string("layout")
        guard let layout = Layout(rawValue: layoutText) else { throw f.fail("layout", "\"NCHW\" or \"NHWC\"") }
        let file = try f.string("file")
        if let problem = SchemaRules.pathProblem(file) { throw SchemaError("\(f.location).file: \(problem)") }
        var entries: [EntryInfo] = []
        let rawEntries = try list(f, "entries")
        if rawEntries.isEmpty { throw f.fail("entries", "at least one entry (an artifact serves at least one resolution)") }
        for (j, rawEntry) in rawEntries.enumerated() {
            let e = try Fields(rawEntry, "\(f.location).entries[\(j)]")
            var factor = SchemaRules.positive  // a stage scale factor, in (0, 1]
            factor.maximum = 1
            let scales: [Double]? = try e.optArray("stage_scales") != nil ? e.numbers("stage_scales", factor) : nil
            try entries.append(EntryInfo(resolution: e.int("resolution", SchemaRules.resolution),
                                         name: e.string("name", SchemaRules.entryName),
                                         inputName: e.string("input_name"), outputName: e.string("output_name"),
                                         inputShape: e.integers("input_shape", SchemaRules.count),
                                         stageScales: scales))
        }
        var extra: [FileRef] = []
        for (j, rawRef) in (try f.optArray("extra_files") ?? []).enumerated() {
            let r = try Fields(rawRef, "\(f.location).extra_files[\(j)]")
            let name = try r.string("file")
            if let problem = SchemaRules.pathProblem(name) { throw SchemaError("\(r.location).file: \(problem)") }
            try extra.append(FileRef(file: name, sha256: r.string("sha256", SchemaRules.sha256),
                                     bytes: r.int("bytes", SchemaRules.nonNegative)))
        }
        for (j, rawParity) in (try f.optArray("parity") ?? []).enumerated() {
            let p = try Fields(rawParity, "\(f.location).parity[\(j)]")
            _ = try p.int("resolution", SchemaRules.resolution)
            _ = try p.int("samples", SchemaRules.count)
            _ = try p.double("max_rel_error", SchemaRules.nonNegative)
            for name in ["top1_agreement", "top1_artifact", "top1_torch"] { _ = try p.double(name, SchemaRules.fraction) }
        }
        _ = try f.optDouble("convert_seconds", SchemaRules.nonNegative)
        guard case .bool(let runsOnHost)? = f.raw("runs_on_host") else { throw f.fail("runs_on_host", "true or false") }
        let backend = try f.string("backend")
        var units: [String]? = nil
        if let raw = f.raw("compute_units"), !raw.isNull {
            let allowed = ArtifactInfo.units[backend] ?? []
            let what = "a non-empty list of distinct \(backend) compute units: \(allowed.joined(separator: ", "))"
            guard raw.arrayValue != nil else { throw f.fail("compute_units", what) }
            let list = try strings(f, "compute_units")
            if list.isEmpty || Set(list).count != list.count || list.contains(where: { !allowed.contains($0) }) {
                throw f.fail("compute_units", what + " (got \(list))")
            }
            units = list
        }
        return try ArtifactInfo(backend: backend, precision: f.string("precision"), file: file,
                                sha256: f.string("sha256", SchemaRules.sha256),
                                bytes: f.int("bytes", SchemaRules.nonNegative), layout: layout, entries: entries,
                                runsOnHost: runsOnHost, extraFiles: extra, computeUnits: units)
    }

    private static func list(_ f: Fields, _ name: String) throws -> [JSONValue] {
        guard let a = f.raw(name)?.arrayValue else { throw f.fail(name, "a list") }
        return a
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
