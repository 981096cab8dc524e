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
        XCTAssertTrue(openError().contains("manifest.json: inputs[1].std: expected 3 positive numbers"), openError())
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
        let e = openError()
        XCTAssertTrue(e.contains("manifest.json: artifacts[1].file: \"executorch/model.pte\" resolves to"), e)
        XCTAssertTrue(e.contains("outside the bundle"), e)
        // A symlinked folder on the way out.
        try FileManager.default.removeItem(at: pte)
        try dir.write("executorch/model.pte", Data((0..<200).map { UInt8($0) }))
        let exDir = dir.url.appendingPathComponent("executorch")
        try FileManager.default.moveItem(at: exDir, to: outside.url.appendingPathComponent("executorch"))
        try FileManager.default.createSymbolicLink(at: exDir, withDestinationURL: outside.url.appendingPathComponent("executorch"))
        XCTAssertTrue(openError().contains("outside the bundle"), openError())
    }

    func testSymlinkInsideAFolderArtifactLeavingTheBundle() throws {
        let outside = try TempDir()
        let secret = try outside.write("secret.bin", "secret")
        try writeManifest(try makeBundle())
        try FileManager.default.createSymbolicLink(
            at: dir.url.appendingPathComponent("coreml/model.mlpackage/Data/leak.bin"), withDestinationURL: secret)
        let e = openError(["coreml"])
        XCTAssertTrue(e.contains("artifacts[0].file: Data/leak.bin is a symlink to"), e)
        XCTAssertTrue(e.contains("outside the bundle"), e)
    }

    func testSymlinkStayingInsideTheBundleIsFine() throws {
        var m = try makeBundle()
        try dir.write("shared/model.pte", Data((0..<200).map { UInt8($0) }))
        let pte = dir.url.appendingPathComponent("executorch/model.pte")
        try FileManager.default.removeItem(at: pte)
        try FileManager.default.createSymbolicLink(atPath: pte.path, withDestinationPath: "../shared/model.pte")
        artifact(&m, 1, "sha256", Sha256Stream.hex(of: Data((0..<200).map { UInt8($0) })))
        try writeManifest(m)
        XCTAssertEqual(openError(), "no error")
    }
}
