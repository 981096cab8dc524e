import Foundation
import XCTest
import ResflexGolden
import ResflexSelector
@testable import ResflexCore

/// BenchmarkRunner with a fake engine and clock: exact percentiles, the device_profile.json structure of
/// tests/golden/README.md, failures, energy, no NaN/Infinity, atomic write. With RESFLEX_PORT_OUT set, one test
/// writes $RESFLEX_PORT_OUT/device_profile_swift.json for `resflex profile BUNDLE --import` in CI.
final class BenchmarkTests: XCTestCase {
    final class FakeMeter: EnergyMeter {
        let estimated = true
        var value: Double?
        init(_ value: Double?) { self.value = value }
        func start() {}
        func stop() -> Double? { return value }
    }

    func testPercentilesAreNumpysLinearInterpolation() {
        XCTAssertEqual(percentile([3, 1, 2], 50), 2)
        let xs = (1...10).map(Double.init)
        XCTAssertEqual(percentile(xs, 50), 5.5, accuracy: 1e-12)
        XCTAssertEqual(percentile(xs, 90), 9.1, accuracy: 1e-12)
        XCTAssertEqual(percentile(xs, 99), 9.91, accuracy: 1e-12)
        XCTAssertEqual(percentile([7], 99), 7)
        XCTAssertEqual(percentile([1, 2], 0), 1)
        XCTAssertEqual(percentile([1, 2], 100), 2)
    }

    func lut() throws -> Lut {
        let text = """
            {"kind": "resflex.lut", "schema_version": "1.0", "operating_points": [
             {"resolution": 224, "backend": "coreml", "precision": "fp16", "compute_unit": "CPU_AND_NE",
              "artifact": "coreml/m.mlpackage", "entry": "main_224", "macs": 300000000, "top1": 0.7},
             {"resolution": 160, "backend": "coreml", "precision": "fp16", "compute_unit": "CPU_AND_GPU",
              "artifact": "coreml/m.mlpackage", "entry": "main_160", "macs": 150000000, "top1": 0.6,
              "stage_scales": [1.0, 0.5]},
             {"resolution": 224, "backend": "tflite", "precision": "fp32", "compute_unit": "GPU",
              "artifact": "tflite/m.tflite", "entry": "serving_224", "macs": 300000000, "top1": 0.7}]}
            """
        return try Lut.parse(Data(text.utf8))
    }

    func testDeviceProfileStructureAndExactPercentiles() throws {
        let engine = FakeEngine(backends: ["coreml"])
        let clock = ManualClock()
        engine.clock = clock
        // Timed runs of main_224 take 1, 2, …, 10 ms (after 2 warm-up runs of 100 ms); main_160 fails to load.
        engine.runMs = { _, n in n < 2 ? 100 : Double(n - 1) }
        engine.failLoad = { p in p.resolution == 160 ? "function main_160 not found in m.mlpackage" : nil }
        let runner = BenchmarkRunner(engine: engine, clock: clock, energy: FakeMeter(25), runs: 10, warmup: 2)
        var progress: [String] = []
        let profile = try runner.run(lut: try lut(), deviceId: "ios-iphone16-1",
                                     facts: ["platform": "ios", "model": "iPhone16,1", "app": "resflex-demo 0.1"],
                                     checkpointSha256: "abc", input: { p in ([0], [1, 3, p.resolution, p.resolution]) },
                                     progress: { n, total, p in progress.append("\(n)/\(total) \(p.entry)") })
        XCTAssertEqual(progress, ["0/2 main_224", "1/2 main_160"])
        let dir = try TempDir()
        let url = dir.url.appendingPathComponent(DeviceProfile.file)
        try profile.write(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.url.path), [DeviceProfile.file])
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssertFalse(text.contains("NaN") || text.contains("Infinity"))
        let doc = try JSONValue.parse(Data(text.utf8))
        XCTAssertEqual(doc.objectValue.map { Set($0.keys) }, ["kind", "schema_version", "device_id", "facts",
                                                               "checkpoint_sha256", "measurements", "failures"])
        XCTAssertEqual(doc["kind"]?.stringValue, "resflex.device_profile")
        XCTAssertEqual(doc["schema_version"]?.stringValue, "1.0")
        XCTAssertEqual(doc["device_id"]?.stringValue, "ios-iphone16-1")
        XCTAssertEqual(doc["facts"]?["model"]?.stringValue, "iPhone16,1")
        XCTAssertEqual(doc["checkpoint_sha256"]?.stringValue, "abc")
        let ms = try XCTUnwrap(doc["measurements"]?.arrayValue)
        XCTAssertEqual(ms.count, 1)
        let m = ms[0]
        XCTAssertEqual(m.objectValue.map { Set($0.keys) }, ["resolution", "backend", "precision", "compute_unit",
                                                             "stage_scales", "entry", "latency", "energy_estimated"])
        XCTAssertEqual(m["resolution"]?.intValue, 224)
        XCTAssertEqual(m["backend"]?.stringValue, "coreml")
        XCTAssertEqual(m["precision"]?.stringValue, "fp16")
        XCTAssertEqual(m["compute_unit"]?.stringValue, "CPU_AND_NE")
        XCTAssertTrue(m["stage_scales"]?.isNull == true)
        XCTAssertEqual(m["entry"]?.stringValue, "main_224")
        XCTAssertEqual(m["energy_estimated"].map { $0.text }, "true")
        let lat = try XCTUnwrap(m["latency"])
        XCTAssertEqual(lat.objectValue.map { Set($0.keys) }, ["runtime", "threads", "runs", "p50_ms", "p90_ms", "p99_ms",
                                                               "peak_memory_mb", "gflops", "energy_mj"])
        XCTAssertEqual(lat["runtime"]?.stringValue, "coreml")
        XCTAssertEqual(lat["threads"]?.intValue, 0)
        XCTAssertEqual(lat["runs"]?.intValue, 10)
        XCTAssertEqual(try XCTUnwrap(lat["p50_ms"]?.doubleValue), 5.5, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(lat["p90_ms"]?.doubleValue), 9.1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(lat["p99_ms"]?.doubleValue), 9.91, accuracy: 1e-12)
        XCTAssertTrue(lat["peak_memory_mb"]?.isNull == true)
        XCTAssertEqual(try XCTUnwrap(lat["gflops"]?.doubleValue), 2 * 3e8 / (5.5 * 1e6), accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(lat["energy_mj"]?.doubleValue), 2.5, accuracy: 1e-12)
        let fs = try XCTUnwrap(doc["failures"]?.arrayValue)
        XCTAssertEqual(fs.count, 1)
        XCTAssertEqual(fs[0].objectValue.map { Set($0.keys) }, ["resolution", "backend", "precision", "compute_unit",
                                                                 "entry", "error", "stage_scales"])
        XCTAssertEqual(fs[0]["stage_scales"]?.arrayValue?.compactMap { $0.doubleValue }, [1.0, 0.5])
        XCTAssertEqual(fs[0]["entry"]?.stringValue, "main_160")
        XCTAssertEqual(fs[0]["compute_unit"]?.stringValue, "CPU_AND_GPU")
        XCTAssertEqual(fs[0]["error"]?.stringValue, "function main_160 not found in m.mlpackage")
        // Warm-up runs are not timed; the TFLite point is not this engine's.
        XCTAssertEqual(engine.runs.count, 12)
    }

    func testNonFiniteNumbersAreNeverWritten() throws {
        let engine = FakeEngine(backends: ["coreml"])
        let clock = ManualClock()
        engine.clock = clock
        engine.runMs = { p, _ in p.resolution == 160 ? Double.nan : 2 }
        let runner = BenchmarkRunner(engine: engine, clock: clock, energy: FakeMeter(Double.infinity), runs: 3, warmup: 0)
        let profile = try runner.run(lut: try lut(), deviceId: "x", facts: [:], checkpointSha256: "",
                                     input: { _ in ([0], [1]) })
        XCTAssertEqual(profile.measurements.count, 1)
        XCTAssertEqual(profile.failures.map { $0.point.entry }, ["main_160"])
        XCTAssertTrue(profile.failures[0].error.contains("non-finite"))
        clock.now = 0  // (NaN since the NaN runs)
        engine.runMs = { _, _ in 0 }  // a clock too coarse: a failure, never p50 = 0 or gflops = ∞
        let coarse = try runner.run(lut: try lut(), deviceId: "x", facts: [:], checkpointSha256: "",
                                    input: { _ in ([0], [1]) })
        XCTAssertEqual(coarse.measurements.count, 0)
        XCTAssertTrue(coarse.failures[0].error.contains("measured 0 ms"), coarse.failures[0].error)
        let text = profile.json().text()
        XCTAssertFalse(text.contains("nan") || text.contains("inf"), text)
        let lat = try XCTUnwrap(JSONValue.parse(Data(text.utf8))["measurements"]?.arrayValue?.first?["latency"])
        XCTAssertEqual(lat["gflops"]?.doubleValue, 300.0)
        XCTAssertTrue(lat["energy_mj"]?.isNull == true)
        XCTAssertEqual(JSONOut.array([.number(.nan), .number(-.infinity), .finite(nil)]).text(indent: nil),
                       "[null, null, null]")
        XCTAssertThrowsError(try runner.run(lut: try lut(), deviceId: "iPhone 15", facts: [:], checkpointSha256: "",
                                            input: { _ in ([0], [1]) }))
        XCTAssertEqual(DeviceProfile.deviceId(model: "iPhone16,1"), "ios-iphone16-1")
        XCTAssertFalse(DeviceProfile.isValidDeviceId("-phone"))
        XCTAssertFalse(DeviceProfile.isValidDeviceId(String(repeating: "a", count: 129)))
        XCTAssertTrue(DeviceProfile.isValidDeviceId("swift-fake-phone"))
    }

    func testJSONTextEscapesAndNumbers() {
        let v = JSONOut.object([("a\"b", .string("line\nbreak\u{1}é")), ("n", .number(0.1)), ("i", .number(3)),
                                ("e", .number(1e-7)), ("big", .number(1e20)), ("list", .array([])), ("o", .object([]))])
        XCTAssertEqual(v.text(indent: nil),
                       "{\"a\\\"b\": \"line\\nbreak\\u0001é\", \"n\": 0.1, \"i\": 3.0, \"e\": 1e-07, \"big\": 1e+20, "
                       + "\"list\": [], \"o\": {}}")
    }

    /// For CI: `RESFLEX_PORT_OUT=dir [RESFLEX_PORT_LUT=bundle/lut.json] [RESFLEX_PORT_CHECKPOINT_SHA256=…] swift test`
    /// writes dir/device_profile_swift.json (device "swift-fake-phone"), measuring the LUT's coreml and executorch
    /// points with a fake engine, for `resflex profile BUNDLE --import`. Without the checkpoint variable it is read
    /// from the manifest.json beside the LUT.
    func testWritesDeviceProfileForThePythonImportWhenAsked() throws {
        let env = ProcessInfo.processInfo.environment
        guard let out = env["RESFLEX_PORT_OUT"], !out.isEmpty else {
            print("RESFLEX_PORT_OUT not set: no device_profile_swift.json written")
            return
        }
        let lut: Lut
        // checkpoint_sha256: the env var, else manifest.json beside the LUT, else 64 zeros (a well-formed value).
        var checkpoint = env["RESFLEX_PORT_CHECKPOINT_SHA256"] ?? ""
        if let path = env["RESFLEX_PORT_LUT"], !path.isEmpty {
            let url = URL(fileURLWithPath: path)
            lut = try Lut.read(url)
            let manifest = url.deletingLastPathComponent().appendingPathComponent(Manifest.file)
            if checkpoint.isEmpty, let data = try? Data(contentsOf: manifest) {
                checkpoint = (try? Manifest.parse(data).model.checkpointSha256) ?? ""
            }
        } else {
            lut = try self.lut()
        }
        if checkpoint.isEmpty { checkpoint = String(repeating: "0", count: 64) }
        let engine = FakeEngine(backends: ["coreml", "executorch"])
        let clock = ManualClock()
        engine.clock = clock
        // Deterministic fake latencies: 1 ms + 10 ms per GMAC, + 0.01 ms × run number.
        engine.runMs = { p, n in 1 + 10 * Double(p.macs) / 1e9 + 0.01 * Double(n % 7) }
        let runner = BenchmarkRunner(engine: engine, clock: clock, energy: nil, runs: 20, warmup: 2)
        let profile = try runner.run(lut: lut, deviceId: "swift-fake-phone",
                                     facts: ["platform": "ios", "model": "fake", "os": "Linux (swift test)",
                                             "app": "resflex ios_demo tests"],
                                     checkpointSha256: checkpoint,
                                     input: { p in ([0], [1, 3, p.resolution, p.resolution]) })
        let dir = URL(fileURLWithPath: out, isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent("device_profile_swift.json")
        try profile.write(to: url)
        print("wrote \(url.path): \(profile.measurements.count) measurements, \(profile.failures.count) failures")
    }
}
