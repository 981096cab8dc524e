import Foundation
import XCTest
import ResflexSelector
@testable import ResflexCore

/// Bundles built in a temporary folder: a Core ML .mlpackage (a folder), an ExecuTorch .pte with an extra file;
/// then broken one way at a time. Every error must name the file and the field.
final class BundleReaderTests: XCTestCase {
    var dir: TempDir!

    override func setUpWithError() throws {
        dir = try TempDir()
    }

    override func tearDown() {
        dir = nil
    }

    static let lutText = """
        {"kind": "resflex.lut", "schema_version": "1.0", "operating_points": [
          {"resolution": 224, "backend": "coreml", "precision": "fp16", "compute_unit": "CPU_ONLY",
           "artifact": "coreml/model.mlpackage", "entry": "main_224", "macs": 300000000, "params": 1,
           "artifact_bytes": 1, "artifact_resolutions": 2, "top1": 0.7},
          {"resolution": 160, "backend": "coreml", "precision": "fp16", "compute_unit": "ALL",
           "artifact": "coreml/model.mlpackage", "entry": "main_160", "macs": 150000000, "params": 1,
           "artifact_bytes": 1, "artifact_resolutions": 2, "top1": 0.6},
          {"resolution": 224, "backend": "executorch", "precision": "fp32", "compute_unit": "XNNPACK",
           "artifact": "executorch/model.pte", "entry": "forward_224", "macs": 300000000, "params": 1,
           "artifact_bytes": 1, "artifact_resolutions": 1, "top1": 0.71}],
         "devices": {}}
        """

    /// Writes the artifacts and returns the manifest as a mutable dictionary (written by `writeManifest`).
    func makeBundle() throws -> [String: Any] {
        try dir.write("coreml/model.mlpackage/Manifest.json", "{\"fileFormatVersion\": \"1.0.0\"}")
        try dir.write("coreml/model.mlpackage/Data/com.apple.CoreML/model.mlmodel", Data([0, 1, 2, 3, 250]))
        try dir.write("coreml/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin", Data(repeating: 7, count: 300))
        try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0) }))
        try dir.write("executorch/model.ptd", "named data")
        try dir.write("lut.json", BundleReaderTests.lutText)
        let ml = try BundleReader.sha256(of: dir.url.appendingPathComponent("coreml/model.mlpackage").path)
        let pte = try BundleReader.sha256(of: dir.url.appendingPathComponent("executorch/model.pte").path)
        let ptd = try BundleReader.sha256(of: dir.url.appendingPathComponent("executorch/model.ptd").path)
        func entry(_ r: Int, _ name: String) -> [String: Any] {
            return ["resolution": r, "name": name, "input_name": "image", "output_name": "logits",
                    "input_shape": [1, 3, r, r]]
        }
        func input(_ r: Int) -> [String: Any] {
            return ["resolution": r, "resize_shorter_to": r * 8 / 7, "crop": r, "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225], "interpolation": "bilinear_antialias"]
        }
        return [
            "kind": "resflex.manifest", "schema_version": "1.0",
            "model": ["arch": "mobilenet_v2", "method": "rs", "width": 1.0, "num_classes": 3,
                      "train_resolutions": [224, 160], "class_names": ["cat", "dog", "eel"],
                      "checkpoint_sha256": String(repeating: "ab", count: 32)],
            "resolutions": [224, 160], "inputs": [input(224), input(160)],
            "artifacts": [
                ["backend": "coreml", "precision": "fp16", "file": "coreml/model.mlpackage", "sha256": ml, "bytes": 1,
                 "layout": "NCHW", "entries": [entry(224, "main_224"), entry(160, "main_160")], "runs_on_host": false],
                ["backend": "executorch", "precision": "fp32", "file": "executorch/model.pte", "sha256": pte,
                 "bytes": 1, "layout": "NCHW", "entries": [entry(224, "forward_224")], "runs_on_host": true,
                 "extra_files": [["file": "executorch/model.ptd", "sha256": ptd, "bytes": 10]]],
            ],
        ]
    }

    func writeManifest(_ m: [String: Any]) throws {
        try dir.write("manifest.json", try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys]))
    }

    func artifact(_ m: inout [String: Any], _ i: Int, _ key: String, _ value: Any) {
        var list = m["artifacts"] as! [[String: Any]]
        list[i][key] = value
        m["artifacts"] = list
    }

    func openError(_ backends: Set<String>? = nil) -> String {
        do {
            _ = try BundleReader.open(dir.url, backends: backends)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testOpensAndVerifiesAValidBundle() throws {
        let m = try makeBundle()
        try writeManifest(m)
        try dir.write("selector_policy.json", "{\"kind\": \"resflex.selector_policy\", \"latency_budget_ms\": 20}")
        let b = try BundleReader.open(dir.url)
        XCTAssertEqual(b.manifest.model.classNames, ["cat", "dog", "eel"])
        XCTAssertEqual(b.manifest.inputs[0], InputSpec(resolution: 224, resizeShorterTo: 256, crop: 224,
                                                       mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]))
        XCTAssertEqual(b.manifest.artifacts[0].layout, .nchw)
        XCTAssertEqual(b.manifest.artifacts[1].extraFiles.map { $0.file }, ["executorch/model.ptd"])
        XCTAssertEqual(b.lut.operatingPoints.count, 3)
        XCTAssertEqual(b.policy?.latencyBudgetMs, 20)
        XCTAssertEqual(b.verified, ["coreml/model.mlpackage", "executorch/model.pte"])
        let op = b.lut.operatingPoints[0]
        let a = try XCTUnwrap(b.artifact(for: op))
        XCTAssertEqual(try b.url(of: a).lastPathComponent, "model.mlpackage")
        XCTAssertEqual(a.entry(named: "main_160")?.inputShape, [1, 3, 160, 160])
        XCTAssertEqual(try b.selector(device: "phone").policy.latencyBudgetMs, 20)
    }

    func testOnlyRequestedBackendsAreHashedAndUsable() throws {
        var m = try makeBundle()
        artifact(&m, 1, "sha256", String(repeating: "0", count: 64))  // executorch tampered, but not requested
        try writeManifest(m)
        let b = try BundleReader.open(dir.url, backends: ["coreml"])
        XCTAssertEqual(b.verified, ["coreml/model.mlpackage"])
        XCTAssertThrowsError(try b.url(of: b.manifest.artifacts[1])) { error in
            XCTAssertTrue("\(error)".contains("executorch/model.pte: not verified"), "\(error)")
        }
        XCTAssertTrue(openError().contains("artifacts[1].sha256"))
    }

    func testTamperedByteInAFolderArtifact() throws {
        try writeManifest(try makeBundle())
        let weights = "coreml/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"
        var data = try Data(contentsOf: dir.url.appendingPathComponent(weights))
        data[100] ^= 1
        try dir.write(weights, data)
        let e = openError()
        XCTAssertTrue(e.contains("manifest.json: artifacts[0].sha256: coreml/model.mlpackage has sha256"), e)
        XCTAssertTrue(e.contains("tampered"), e)
    }

    func testTamperedByteInAFileAndAnExtraFile() throws {
        try writeManifest(try makeBundle())
        try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0 == 17 ? 0 : $0) }))
        XCTAssertTrue(openError().contains("artifacts[1].sha256: executorch/model.pte has sha256"), openError())
        try writeManifest(try makeBundle())
        try dir.write("executorch/model.ptd", "named dat4")
        XCTAssertTrue(openError().contains("artifacts[1].extra_files[0].sha256: executorch/model.ptd"), openError())
    }

    func testAFileAddedToAFolderArtifactChangesItsHash() throws {
        try writeManifest(try makeBundle())
        try dir.write("coreml/model.mlpackage/Data/extra", "x")
        XCTAssertTrue(openError().contains("artifacts[0].sha256"), openError())
    }

    func testMissingFiles() throws {
        try writeManifest(try makeBundle())
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("executorch/model.pte"))
        XCTAssertTrue(openError().contains("manifest.json: artifacts[1].file: executorch/model.pte is missing"), openError())
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("lut.json"))
        XCTAssertTrue(openError().contains("lut.json: not found"), openError())
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("manifest.json"))
        XCTAssertTrue(openError().contains("manifest.json: not found"), openError())
        XCTAssertTrue(openError().hasPrefix("manifest.json"), openError())
    }

    func testKindAndVersion() throws {
        var m = try makeBundle()
        m["schema_version"] = "2.0"
        try writeManifest(m)
        XCTAssertTrue(openError().contains("manifest.json: schema_version \"2.0\" is not supported"), openError())
        m["schema_version"] = "1.7"  // a newer minor version is read
        try writeManifest(m)
        XCTAssertEqual(openError(), "no error")
        m["kind"] = "resflex.lut"
        try writeManifest(m)
        XCTAssertTrue(openError().contains("manifest.json: kind is \"resflex.lut\", expected resflex.manifest"), openError())
        m["kind"] = "resflex.manifest"
        try writeManifest(m)
        try dir.write("lut.json", BundleReaderTests.lutText.replacingOccurrences(of: "\"1.0\"", with: "\"3.1\""))
        XCTAssertTrue(openError().contains("lut.json: schema_version \"3.1\" is not supported"), openError())
        try dir.write("lut.json", BundleReaderTests.lutText)
        try dir.write("selector_policy.json", "{\"schema_version\": \"2.0\"}")
        XCTAssertTrue(openError().contains("selector_policy.json: schema_version \"2.0\" is not supported"), openError())
    }

    func testFieldErrorsNameTheField() throws {
        var m = try makeBundle()
        artifact(&m, 0, "layout", "CHWN")
        try writeManifest(m)
        XCTAssertTrue(openError().contains("manifest.json: artifacts[0].layout: expected \"NCHW\" or \"NHWC\""), openError())
        m = try makeBundle()
        var inputs = m["inputs"] as! [[String: Any]]
        inputs[1]["std"] = [0.2, 0.0, 0.2]
        m["inputs"] = inputs
        try writeManifest(m)
        XCTAssertTrue(openError().contains("manifest.json: inputs[1].std[1]: 0 is out of range (expected > 0)"), openError())
        try dir.write("manifest.json", "{not json")
        XCTAssertTrue(openError().contains("manifest.json: not valid JSON"), openError())
    }

    func testDotDotAndAbsolutePathsAreRefused() throws {
        for bad in ["../outside.pte", "executorch/../../outside.pte", "/etc/passwd", "~/x.pte", "", "a\\b.pte"] {
            var m = try makeBundle()
            artifact(&m, 1, "file", bad)
            try writeManifest(m)
            let e = openError()
            XCTAssertTrue(e.contains("manifest.json: artifacts[1].file: \"\(bad)\" is not a safe relative path"), e)
        }
        var m = try makeBundle()
        artifact(&m, 1, "extra_files", [["file": "../../x", "sha256": "00", "bytes": 1]])
        try writeManifest(m)
        XCTAssertTrue(openError().contains("artifacts[1].extra_files[0].file: \"../../x\" is not a safe"), openError())
        try writeManifest(try makeBundle())
        try dir.write("lut.json", BundleReaderTests.lutText.replacingOccurrences(of: "executorch/model.pte",
                                                                                with: "../model.pte"))
        XCTAssertTrue(openError().contains("lut.json: operating_points[2].artifact: \"../model.pte\" is not a safe"),
                      openError())
    }

    func testSymlinksLeavingTheBundleAreRefused() throws {
        let outside = try TempDir()
        let secret = try outside.write("model.pte", Data((0..<200).map { UInt8($0) }))
        try writeManifest(try makeBundle())
        let pte = dir.url.appendingPathComponent("executorch/model.pte")
        try FileManager.default.removeItem(at: pte)
        try FileManager.default.createSymbolicLink(at: pte, withDestinationURL: secret)
        XCTAssertEqual(openError(), "executorch/model.pte: is a symlink; a bundle may not contain symlinks")
        // A symlinked folder on the way out.
        try FileManager.default.removeItem(at: pte)
        try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0) }))
        let exDir = dir.url.appendingPathComponent("executorch")
        try FileManager.default.moveItem(at: exDir, to: outside.url.appendingPathComponent("executorch"))
        try FileManager.default.createSymbolicLink(at: exDir, withDestinationURL: outside.url.appendingPathComponent("executorch"))
        XCTAssertEqual(openError(), "executorch: is a symlink; a bundle may not contain symlinks")
    }

    func testSymlinkInsideAFolderArtifactLeavingTheBundle() throws {
        let outside = try TempDir()
        let secret = try outside.write("secret.bin", "secret")
        try writeManifest(try makeBundle())
        try FileManager.default.createSymbolicLink(
            at: dir.url.appendingPathComponent("coreml/model.mlpackage/Data/leak.bin"), withDestinationURL: secret)
        XCTAssertEqual(openError(["coreml"]),
                       "coreml/model.mlpackage/Data/leak.bin: is a symlink; a bundle may not contain symlinks")
        // sha256(of:) on its own refuses it too.
        XCTAssertThrowsError(try BundleReader.sha256(of: dir.url.appendingPathComponent("coreml/model.mlpackage").path))
    }

    /// Python, Kotlin and Swift refuse every symlink in a bundle, even one that stays inside (issue 24).
    func testSymlinkStayingInsideTheBundleIsRefused() throws {
        var m = try makeBundle()
        try dir.write("shared/model.pte", Data((0..<200).map { UInt8($0) }))
        let pte = dir.url.appendingPathComponent("executorch/model.pte")
        try FileManager.default.removeItem(at: pte)
        try FileManager.default.createSymbolicLink(atPath: pte.path, withDestinationPath: "../shared/model.pte")
        artifact(&m, 1, "sha256", Sha256Stream.hex(of: Data((0..<200).map { UInt8($0) })))
        try writeManifest(m)
        XCTAssertEqual(openError(), "executorch/model.pte: is a symlink; a bundle may not contain symlinks")
    }

    /// Set `value` at `path` (object keys and list indices) of a manifest built by `makeBundle`.
    static func set(_ doc: Any, _ path: [Any], _ value: Any) -> Any {
        guard let first = path.first else { return value }
        let rest = Array(path.dropFirst())
        if var o = doc as? [String: Any], let k = first as? String {
            o[k] = set(o[k] ?? NSNull(), rest, value)
            return o
        }
        if var a = doc as? [Any], let i = first as? Int {
            a[i] = set(a[i], rest, value)
            return a
        }
        return doc
    }

    /// The ranges of mobile/bundle/schema.py RULES for manifest.json, one row per rule: (path of the mutated value,
    /// the value, the field path the error must name, a fragment of the problem).
    static let badManifests: [(path: [Any], value: Any, field: String, problem: String)] = [
        (["schema_version"], "1.garbage", "schema_version", "\"1.garbage\" is not supported"),
        (["resolutions"], [-224, 160], "resolutions[0]", "-224 is out of range (expected ≥ 1 and ≤ 65536)"),
        (["resolutions"], [224, 224], "resolutions[1]", "repeated value 224"),
        (["resolutions"], [9_007_199_254_740_992], "resolutions[0]", "integers are at most 2^53 − 1"),
        (["model", "train_resolutions"], [160, 160], "model.train_resolutions[1]", "repeated value 160"),
        (["model", "num_classes"], 0, "model.num_classes", "0 is out of range (expected ≥ 1)"),
        (["model", "width"], -1.5, "model.width", "out of range (expected > 0)"),
        (["model", "checkpoint_sha256"], String(repeating: "AB", count: 32), "model.checkpoint_sha256",
         "does not match ^[0-9a-f]{64}$"),
        (["inputs", 0, "resolution"], 0, "inputs[0].resolution", "0 is out of range"),
        (["inputs", 1, "resolution"], 224, "inputs[1].resolution", "duplicate input resolution 224"),
        (["inputs", 0, "crop"], 0, "inputs[0].crop", "out of range"),
        (["inputs", 0, "resize_shorter_to"], 70000, "inputs[0].resize_shorter_to", "out of range"),
        (["inputs", 0, "std"], [0.2, -0.1, 0.2], "inputs[0].std[1]", "-0.1 is out of range (expected > 0)"),
        (["artifacts", 0, "sha256"], "abc", "artifacts[0].sha256", "does not match ^[0-9a-f]{64}$"),
        (["artifacts", 1, "extra_files", 0, "sha256"], String(repeating: "g", count: 64),
         "artifacts[1].extra_files[0].sha256", "does not match"),
        (["artifacts", 1, "extra_files", 0, "bytes"], -5, "artifacts[1].extra_files[0].bytes", "out of range"),
        (["artifacts", 0, "bytes"], -1, "artifacts[0].bytes", "-1 is out of range (expected ≥ 0)"),
        (["artifacts", 0, "convert_seconds"], -0.5, "artifacts[0].convert_seconds", "out of range"),
        (["artifacts", 0, "entries", 0, "name"], "main 224", "artifacts[0].entries[0].name", "does not match"),
        (["artifacts", 0, "entries", 0, "name"], "../main_224", "artifacts[0].entries[0].name", "does not match"),
        (["artifacts", 0, "entries", 1, "name"], "main_224", "artifacts[0].entries[1].name", "duplicate entry name"),
        (["artifacts", 0, "entries", 1, "resolution"], 224, "artifacts[0].entries[1].resolution",
         "duplicate entry (resolution, stage scales)"),
        (["artifacts", 0, "entries", 0, "resolution"], -224, "artifacts[0].entries[0].resolution", "out of range"),
        (["artifacts", 0, "entries", 0, "input_shape"], [1, 3, 0, 224], "artifacts[0].entries[0].input_shape[2]",
         "0 is out of range (expected ≥ 1)"),
        (["artifacts", 0, "entries"], [Any](), "artifacts[0].entries", "at least one entry"),
        (["artifacts", 1, "file"], "manifest.json", "artifacts[1].file", "reserved"),
        (["artifacts", 1, "file"], "coreml/model.mlpackage", "artifacts[1].file", "duplicate artifact file"),
        (["artifacts", 0, "file"], "coreml/./model.mlpackage", "artifacts[0].file", "not a safe relative path"),
        (["artifacts", 0, "file"], "coreml//model.mlpackage", "artifacts[0].file", "not a safe relative path"),
        (["artifacts", 0, "parity"], [["resolution": 224, "samples": 10, "max_rel_error": 0.0, "top1_agreement": 1.5,
                                       "top1_artifact": 0.5, "top1_torch": 0.5, "passed": false]],
         "artifacts[0].parity[0].top1_agreement", "1.5 is out of range (expected ≥ 0 and ≤ 1)"),
    ]

    func testOutOfRangeManifestValuesAreRefusedNamingTheField() throws {
        let m = try makeBundle()
        for (n, c) in BundleReaderTests.badManifests.enumerated() {
            try writeManifest(BundleReaderTests.set(m, c.path, c.value) as! [String: Any])
            let e = openError()
            // "FILE: FIELD: problem" (schema_version, as before: "FILE: schema_version "1.x" is not supported")
            XCTAssertTrue(e.hasPrefix("manifest.json: \(c.field): ") || e.hasPrefix("manifest.json: \(c.field) "),
                          "case \(n): \(e)")
            XCTAssertTrue(e.contains(c.problem), "case \(n): '\(e)' should say '\(c.problem)'")
        }
        try writeManifest(m)
        XCTAssertEqual(openError(), "no error")
    }

    func testStageScaleEntriesShareAResolution() throws {
        // Resizable Networks: two configurations at 224 px are two entries; the same one twice, or a factor > 1, is not.
        var m = try makeBundle()
        func entry(_ name: String, _ scales: [Double]) -> [String: Any] {
            return ["resolution": 224, "name": name, "input_name": "image", "output_name": "logits",
                    "input_shape": [1, 3, 224, 224], "stage_scales": scales]
        }
        artifact(&m, 1, "entries", [entry("forward_224_s1_1", [1, 1]), entry("forward_224_s0p75_1", [0.75, 1])])
        try writeManifest(m)
        XCTAssertEqual(openError(), "no error")
        artifact(&m, 1, "entries", [entry("forward_224_s1_1", [1, 1]), entry("forward_224_s1_1b", [1, 1])])
        try writeManifest(m)
        XCTAssertTrue(openError().contains("entries[1].resolution: duplicate entry (resolution, stage scales)"))
        artifact(&m, 1, "entries", [entry("forward_224_s1p5_1", [1.5, 1])])
        try writeManifest(m)
        XCTAssertTrue(openError().contains("entries[0].stage_scales[0]: 1.5 is out of range"), openError())
    }

    func testNonFiniteManifestNumbersAreRefusedNamingTheField() throws {
        // JSONDecoder refuses a bare NaN in the file; a document built in code can still carry one.
        let m = try makeBundle()
        try writeManifest(m)
        let doc = try JSONValue.parse(try Data(contentsOf: dir.url.appendingPathComponent("manifest.json")))
        guard case .object(var top) = doc, case .array(var inputs)? = top["inputs"], case .object(var first) = inputs[0]
        else { return XCTFail("manifest shape") }
        first["mean"] = .array([.double(0.5), .double(.nan), .double(0.5)])
        inputs[0] = .object(first)
        top["inputs"] = .array(inputs)
        XCTAssertThrowsError(try Manifest.fromJSON(.object(top))) { error in
            XCTAssertTrue("\(error)".hasPrefix("manifest.json: inputs[0].mean[1]: expected a finite number"), "\(error)")
        }
        let text = String(decoding: try Data(contentsOf: dir.url.appendingPathComponent("manifest.json")), as: UTF8.self)
        try dir.write("manifest.json", text.replacingOccurrences(of: "\"num_classes\":3", with: "\"num_classes\":NaN"))
        XCTAssertTrue(openError().hasPrefix("manifest.json: not valid JSON"), openError())
    }

    func testOutOfRangeLutValuesAreRefusedByOpen() throws {
        try writeManifest(try makeBundle())
        try dir.write("lut.json", BundleReaderTests.lutText.replacingOccurrences(of: "\"top1\": 0.6", with: "\"top1\": 1.5"))
        XCTAssertEqual(openError(), "lut.json: operating_points[1].top1: 1.5 is out of range (expected ≥ 0 and ≤ 1)")
        try dir.write("lut.json", BundleReaderTests.lutText.replacingOccurrences(of: "\"1.0\"", with: "\"1.garbage\""))
        XCTAssertTrue(openError().hasPrefix("lut.json: schema_version \"1.garbage\" is not supported"), openError())
        try dir.write("lut.json", BundleReaderTests.lutText.replacingOccurrences(of: "\"main_160\"", with: "\"main 160\""))
        XCTAssertTrue(openError().hasPrefix("lut.json: operating_points[1].entry: \"main 160\" does not match"), openError())
        try dir.write("lut.json", BundleReaderTests.lutText)
        XCTAssertEqual(openError(), "no error")
    }

    // Issue 24: the rules all three readers apply. Before, Swift read a symlinked document outside the bundle,
    // accepted inside symlinks, FIFOs in an .mlpackage and a 180 MB lut.json, and let SchemaError escape `open`.

    func outcome(_ backends: Set<String>? = nil) -> OpenOutcome { return openWithin(dir.url, backends: backends) }

    static let symlinkRefused = "is a symlink; a bundle may not contain symlinks"
    static let specialRefused = "is not a regular file or folder (a FIFO, socket or device); a bundle holds only files and folders"

    func testSymlinkedDocumentsLeadingOutsideAreRefused() throws {
        let outside = try TempDir()
        try writeManifest(try makeBundle())
        try dir.write("selector_policy.json", "{\"kind\": \"resflex.selector_policy\", \"latency_budget_ms\": 20}")
        for name in ["manifest.json", "lut.json", "selector_policy.json"] {
            let doc = dir.url.appendingPathComponent(name)
            let moved = outside.url.appendingPathComponent(name)
            try FileManager.default.moveItem(at: doc, to: moved)
            try FileManager.default.createSymbolicLink(at: doc, withDestinationURL: moved)
            XCTAssertEqual(outcome(), .refused("\(name): \(BundleReaderTests.symlinkRefused)"))
            try FileManager.default.removeItem(at: doc)
            try FileManager.default.moveItem(at: moved, to: doc)
        }
        XCTAssertEqual(outcome(), .ok)
    }

    func testUnlistedSymlinksAnywhereAreRefused() throws {
        try writeManifest(try makeBundle())
        try dir.write("notes/readme.txt", "hello")
        try FileManager.default.createSymbolicLink(atPath: dir.url.appendingPathComponent("notes/root").path,
                                                   withDestinationPath: "/")
        XCTAssertEqual(outcome(), .refused("notes/root: \(BundleReaderTests.symlinkRefused)"))
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("notes/root"))
        try FileManager.default.createSymbolicLink(atPath: dir.url.appendingPathComponent("notes/dangling").path,
                                                   withDestinationPath: "nowhere")
        XCTAssertEqual(outcome(["executorch"]), .refused("notes/dangling: \(BundleReaderTests.symlinkRefused)"))
    }

    func mkfifoAt(_ relative: String) throws {
        let url = dir.url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: url)
        XCTAssertEqual(mkfifo(url.path, 0o644), 0, "mkfifo \(url.path)")
    }

    func testFifosAreRefusedWithoutBlocking() throws {
        let m = try makeBundle()
        for (fifo, backends) in [("executorch/model.pte", nil), ("lut.json", nil), ("manifest.json", nil),
                                 ("selector_policy.json", nil), ("coreml/model.mlpackage/Data/pipe", Set(["coreml"])),
                                 ("unlisted/pipe", Set(["coreml"]))] as [(String, Set<String>?)] {
            try writeManifest(m)
            try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0) }))
            try dir.write("lut.json", BundleReaderTests.lutText)
            try? FileManager.default.removeItem(at: dir.url.appendingPathComponent("selector_policy.json"))
            XCTAssertEqual(outcome(backends), .ok)
            try mkfifoAt(fifo)
            XCTAssertEqual(outcome(backends), .refused("\(fifo): \(BundleReaderTests.specialRefused)"), fifo)
            try FileManager.default.removeItem(at: dir.url.appendingPathComponent(fifo))
        }
    }

    func testDocumentsOverTheSizeCapAreRefusedBeforeReading() throws {
        try writeManifest(try makeBundle())
        for name in ["lut.json", "manifest.json", "selector_policy.json"] {
            let url = dir.url.appendingPathComponent(name)
            let saved = FileManager.default.contents(atPath: url.path)
            if saved == nil { try dir.write(name, "{}") }
            let handle = try FileHandle(forWritingTo: url)
            try handle.truncate(atOffset: 180 << 20)  // sparse: nothing is written, nothing should be read
            try handle.close()
            XCTAssertEqual(outcome(), .refused("\(name): \(180 << 20) bytes; a document is at most \(64 << 20) bytes"))
            if let saved = saved { try saved.write(to: url) } else { try FileManager.default.removeItem(at: url) }
        }
        XCTAssertEqual(outcome(), .ok)
        XCTAssertThrowsError(try Document.read(dir.url.appendingPathComponent("nothing.json").path, name: "x"))
    }

    func testDeepNestingIsTheReadersOwnError() throws {
        try writeManifest(try makeBundle())
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let nested = "JSON nested too deeply (more than 64 levels of lists and objects)"
        try dir.write("lut.json", "{\"kind\": \"resflex.lut\", \"x\": \(deep)}")
        XCTAssertEqual(outcome(), .refused("lut.json: \(nested)"))
        try dir.write("lut.json", BundleReaderTests.lutText)
        try dir.write("selector_policy.json", "{\"x\": \(deep)}")
        XCTAssertEqual(outcome(), .refused("selector_policy.json: \(nested)"))
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("selector_policy.json"))
        try dir.write("manifest.json", deep)
        XCTAssertEqual(outcome(), .refused("manifest.json: \(nested)"))
        // The bound counts brackets outside strings only.
        func nest(_ n: Int) -> Data { return Data((String(repeating: "[", count: n) + String(repeating: "]", count: n)).utf8) }
        XCTAssertFalse(Document.tooDeep(nest(64)))
        XCTAssertTrue(Document.tooDeep(nest(65)))
        XCTAssertFalse(Document.tooDeep(Data(("[\"" + String(repeating: "[{", count: 100) + "\\\"[\"]").utf8)))
    }

    func testOnlyBundleErrorLeavesOpen() throws {
        try writeManifest(try makeBundle())
        try dir.write("manifest.json", "{not json")
        guard case .refused = outcome() else { return XCTFail("manifest.json: \(outcome())") }
        var m = try makeBundle()
        artifact(&m, 0, "layout", "CHWN")
        try writeManifest(m)
        guard case .refused = outcome() else { return XCTFail("layout: \(outcome())") }
        try dir.write("selector_policy.json", "[1, 2]")
        try writeManifest(try makeBundle())
        guard case .refused = outcome() else { return XCTFail("policy: \(outcome())") }
    }

    func testOnlyAnMlpackageMayBeAFolderAndHardLinksAreRefused() throws {
        var m = try makeBundle()
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("executorch/model.pte"))
        try dir.write("executorch/model.pte/program", "pte program")
        artifact(&m, 1, "sha256", try BundleReader.sha256(of: dir.url.appendingPathComponent("executorch/model.pte").path))
        try writeManifest(m)
        XCTAssertEqual(outcome(), .refused("manifest.json: artifacts[1].file: executorch/model.pte is a folder; only a "
                                           + ".mlpackage artifact may be a folder"))
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("executorch/model.pte"))
        try writeManifest(try makeBundle())
        try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0) }))
        XCTAssertEqual(outcome(), .ok)
        let outside = try TempDir()
        try FileManager.default.linkItem(at: dir.url.appendingPathComponent("coreml/model.mlpackage/Manifest.json"),
                                         to: outside.url.appendingPathComponent("shared.json"))
        XCTAssertEqual(outcome(), .refused("manifest.json: artifacts[0].file: coreml/model.mlpackage/Manifest.json has "
                                           + "other hard links; a bundle's files may not be shared with files elsewhere"))
    }
}
