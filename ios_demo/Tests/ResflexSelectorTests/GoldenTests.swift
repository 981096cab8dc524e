import Foundation
import XCTest
@testable import ResflexSelector
import ResflexGolden

/// Replays every case of selector_golden.json (a byte-identical copy of tests/golden/selector_golden.json):
/// OperatingPointSelector(lut, device, policy, compute_units); per step choose(state) must equal `expected` (point, index, class, source and
/// reason exactly; predicted_ms and budget_ms within 1e-6 of the 6-decimal values), then observe(d, observed_ms)
/// when observed_ms is not null. Plus the API around it: defaults, bad input, errors that name the field.
final class GoldenTests: XCTestCase {
    func goldenCase(_ name: String) throws -> JSONValue {
        for c in try GoldenSelector.document()["cases"]?.arrayValue ?? [] where c["name"]?.stringValue == name {
            return c
        }
        throw SchemaError("no golden case \(name)")
    }

    func testReplaysEveryGoldenCase() throws {
        let doc = try GoldenSelector.document()
        XCTAssertEqual(doc["kind"]?.stringValue, "resflex.selector_golden")
        let cases = try XCTUnwrap(doc["cases"]?.arrayValue)
        XCTAssertFalse(cases.isEmpty)
        var replayed = 0
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let lut = try Lut.fromJSON(try XCTUnwrap(c["lut"]), source: "case \(name) lut")
            let policy = try Policy.fromJSON(try XCTUnwrap(c["policy"]), source: "case \(name) policy")
            let selector = try OperatingPointSelector(lut: lut, device: try XCTUnwrap(c["device"]?.stringValue), policy: policy,
                                                      computeUnits: GoldenSelector.computeUnits(c))
            var problems: [String] = []
            for (n, step) in (c["steps"]?.arrayValue ?? []).enumerated() {
                let d = selector.choose(GoldenSelector.state(step["state"]))
                for p in GoldenSelector.compare(d, try XCTUnwrap(step["expected"])) { problems.append("step \(n): \(p)") }
                if let observed = step["observed_ms"], !observed.isNull {
                    selector.observe(d, measuredMs: GoldenSelector.decode(observed))
                }
            }
            XCTAssertTrue(problems.isEmpty, "golden case \(name):\n" + problems.joined(separator: "\n"))
            replayed += 1
        }
        print("replayed \(replayed) golden cases")
    }

    func testDefaultPolicyIsThePythonDefault() throws {
        // budget_fits runs with Python's Policy() written out field by field.
        let c = try goldenCase("budget_fits")
        XCTAssertEqual(try Policy.fromJSON(try XCTUnwrap(c["policy"])), Policy())
    }

    func testBadSensorValuesNeverTrap() throws {
        let c = try goldenCase("budget_fits")
        let lut = try Lut.fromJSON(try XCTUnwrap(c["lut"]))
        let selector = try OperatingPointSelector(lut: lut, device: "phone")
        let junk: [Any?] = [nil, true, false, "", "x", -1, 0, 1, 2, 3, 7, 1.5, -0.0, Double.nan, Double.infinity,
                            -Double.infinity, Int.max, Float(0.25), [1]]
        let scales: [Any?] = ["normalized", "android", "ios", "kelvin", nil]
        var seed: UInt64 = 7
        func next(_ count: Int) -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int((seed >> 33) % UInt64(count))
        }
        for _ in 0..<2000 {
            let state = DeviceState(battery: junk[next(junk.count)], charging: junk[next(junk.count)],
                                    powerSave: junk[next(junk.count)], thermal: junk[next(junk.count)],
                                    cpuLoad: junk[next(junk.count)], thermalScale: scales[next(scales.count)])
            let d = selector.choose(state)
            XCTAssertTrue(d.index >= 0 && d.index < lut.operatingPoints.count)
            XCTAssertEqual(d.point, lut.operatingPoints[d.index])
            selector.observe(d, measuredMs: junk[next(junk.count)])
        }
    }

    func testObserveIgnoresWhatIsNotAPositiveFiniteNumber() throws {
        let c = try goldenCase("budget_fits")
        let selector = try OperatingPointSelector(lut: try Lut.fromJSON(try XCTUnwrap(c["lut"])), device: "phone")
        let d = selector.choose(DeviceState())
        let bad: [Any?] = [nil, true, "12", Double.nan, Double.infinity, -3.0, 0]
        for value in bad {
            XCTAssertFalse(selector.observe(d, measuredMs: value))
        }
        XCTAssertEqual(selector.slowdown["cpu"], 1.0)
        XCTAssertTrue(selector.observe(d, measuredMs: 44))
        XCTAssertGreaterThan(selector.slowdown["cpu"] ?? 0, 1.0)
    }

    func testPolicyErrorsNameTheField() throws {
        func message(_ text: String) -> String {
            do {
                _ = try Policy.parse(Data(text.utf8))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(message("{\"latency_budget\": 20}").contains("unknown policy field(s)"))
        XCTAssertTrue(message("{\"battery_low\": 0.05}").contains("battery_low = 0.05"))
        XCTAssertTrue(message("{\"threads\": \"4\"}").contains("threads"))
        XCTAssertTrue(message("{\"thermal_budget\": [1, 0.9, 0.95, 0.5]}").contains("non-increasing"))
        XCTAssertTrue(message("{\"kind\": \"other\"}").contains("kind must be"))
        XCTAssertTrue(message("not json").contains("not valid JSON"))
        XCTAssertTrue(message("{\"miss_frames\": 0}").contains("miss_frames = 0"))
        XCTAssertTrue(message("{\"probe_window_frames\": 1.5}").contains("probe_window_frames"))
        var switchRate = Policy()
        switchRate.missFrames = 1
        switchRate.probeWindowFrames = 5
        XCTAssertEqual(try Policy.parse(Data("{\"miss_frames\": 1, \"probe_window_frames\": 5}".utf8)), switchRate)
        let p = try Policy.parse(Data("{\"latency_budget_ms\": 20, \"battery_critical\": 0.05, \"battery_low\": 0.1}".utf8))
        var expected = Policy()
        expected.latencyBudgetMs = 20
        expected.batteryCritical = 0.05
        expected.batteryLow = 0.1
        XCTAssertEqual(p, expected)
    }

    func testLutErrorsNameTheField() throws {
        let text = "{\"kind\": \"resflex.lut\", \"schema_version\": \"1.0\", \"operating_points\": [{\"resolution\": 224, "
            + "\"backend\": \"onnx\", \"precision\": \"fp32\", \"compute_unit\": \"CPUExecutionProvider\", "
            + "\"artifact\": \"onnx/model.onnx\", \"entry\": \"model_224.onnx\", \"top1\": null}]}"
        XCTAssertThrowsError(try Lut.parse(Data(text.utf8), source: "lut.json")) { error in
            XCTAssertTrue("\(error)".contains("lut.json: operating_points[0].macs: expected an integer"), "\(error)")
        }
        let newer = text.replacingOccurrences(of: "\"1.0\"", with: "\"2.0\"")
        XCTAssertThrowsError(try Lut.parse(Data(newer.utf8))) { error in
            XCTAssertTrue("\(error)".contains("schema_version \"2.0\" is not supported"), "\(error)")
        }
    }
}
