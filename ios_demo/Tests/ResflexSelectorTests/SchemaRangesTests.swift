import Foundation
import XCTest
@testable import ResflexSelector
import ResflexGolden

/// A step into a JSON document: an object key or a list index.
enum Step {
    case key(String)
    case index(Int)
}

extension JSONValue {
    /// The document with the value at `path` replaced by `value` (nil: removed; an index == count: appended).
    func setting(_ path: [Step], _ value: JSONValue?) -> JSONValue {
        guard let first = path.first else { return value ?? .null }
        let rest = Array(path.dropFirst())
        switch (self, first) {
        case (.object(var o), .key(let k)):
            let child = o[k] ?? .null
            if rest.isEmpty && value == nil { o[k] = nil } else { o[k] = child.setting(rest, value) }
            return .object(o)
        case (.array(var a), .index(let i)):
            if i == a.count { a.append((value != nil && rest.isEmpty) ? value! : JSONValue.null.setting(rest, value)) }
            else { a[i] = a[i].setting(rest, value) }
            return .array(a)
        default:
            return self
        }
    }

    func at(_ path: [Step]) -> JSONValue? {
        var v: JSONValue? = self
        for s in path {
            switch s {
            case .key(let k): v = v?[k]
            case .index(let i): v = v?.arrayValue.flatMap { i < $0.count ? $0[i] : nil }
            }
        }
        return v
    }
}

/// The ranges of mobile/bundle/schema.py `RULES` in the Swift lut.json reader: one valid golden LUT, broken one field
/// at a time (a table, one row per rule); every error must name the file and the field path.
final class SchemaRangesTests: XCTestCase {
    /// The golden case budget_fits's LUT (12 points, device "phone").
    func base() throws -> JSONValue {
        let doc = try JSONValue.parse(Golden.data("selector_golden"))
        for c in doc["cases"]?.arrayValue ?? [] where c["name"]?.stringValue == "budget_fits" {
            return try XCTUnwrap(c["lut"])
        }
        throw SchemaError("no golden case budget_fits")
    }

    func message(_ doc: JSONValue) -> String? {
        do {
            _ = try Lut.fromJSON(doc, source: "lut.json")
            return nil
        } catch {
            return "\(error)"
        }
    }

    static func op(_ i: Int = 0, _ rest: Step...) -> [Step] {
        return [.key("operating_points"), .index(i)] + rest
    }

    static let lat: [Step] = op(0, .key("latency"), .key("phone"), .index(0))
    static let latText = "operating_points[0].latency.phone[0]"

    static func model(threads: Int = 4, points: Int = 4) -> JSONValue {
        return .object(["runtime": .string("executorch"), "precision": .string("fp32"),
                        "compute_unit": .string("XNNPACK"), "threads": .int(threads), "intercept_ms": .double(1.5),
                        "ms_per_gmac": .double(120), "mean_abs_rel_error": .double(0.05), "points": .int(points)])
    }

    static let phone: [Step] = [.key("devices"), .key("phone")]

    /// (field path the error must name, a fragment of the problem, how to break the document)
    typealias Case = (path: String, problem: String, mutate: (JSONValue) -> JSONValue)

    static let cases: [Case] = [
        // latency: finite, > 0, ordered, runs ≥ 1, threads in [0, 4096], unique (runtime, threads)
        ("\(latText).p50_ms", "expected a finite number, got nan", { $0.setting(lat + [.key("p50_ms")], .double(.nan)) }),
        ("\(latText).p99_ms", "finite", { $0.setting(lat + [.key("p99_ms")], .double(.infinity)) }),
        ("\(latText).p50_ms", "-40 is out of range (expected > 0)", { $0.setting(lat + [.key("p50_ms")], .double(-40)) }),
        ("\(latText).p90_ms", "0 is out of range (expected > 0)", { $0.setting(lat + [.key("p90_ms")], .int(0)) }),
        (latText, "expected p50 ≤ p90 ≤ p99, got 50.0, 44.0, 48.0", { $0.setting(lat + [.key("p50_ms")], .double(50)) }),
        (latText, "expected p50 ≤ p90 ≤ p99", { $0.setting(lat + [.key("p90_ms")], .double(49)) }),
        ("\(latText).runs", "0 is out of range (expected ≥ 1)", { $0.setting(lat + [.key("runs")], .int(0)) }),
        ("\(latText).threads", "-1 is out of range (expected ≥ 0 and ≤ 4096)",
         { $0.setting(lat + [.key("threads")], .int(-1)) }),
        ("\(latText).threads", "out of range", { $0.setting(lat + [.key("threads")], .int(5000)) }),
        ("\(latText).energy_mj", "out of range (expected ≥ 0)", { $0.setting(lat + [.key("energy_mj")], .double(-2)) }),
        ("\(latText).gflops", "out of range", { $0.setting(lat + [.key("gflops")], .double(-1)) }),
        ("operating_points[0].latency.phone[1]", "duplicate (runtime, threads) (executorch, 4)",
         { $0.setting(op(0, .key("latency"), .key("phone"), .index(1)), $0.at(lat)) }),
        ("operating_points[0].latency", "device tablet is not in devices",
         { $0.setting(op(0, .key("latency"), .key("tablet")), .array([])) }),
        // the operating point
        ("operating_points[0].top1", "1.5 is out of range (expected ≥ 0 and ≤ 1)",
         { $0.setting(op(0, .key("top1")), .double(1.5)) }),
        ("operating_points[0].top1", "out of range", { $0.setting(op(0, .key("top1")), .double(-0.1)) }),
        ("operating_points[0].macs", "0 is out of range (expected ≥ 1)", { $0.setting(op(0, .key("macs")), .int(0)) }),
        ("operating_points[0].macs", "integers are at most 2^53 − 1",
         { $0.setting(op(0, .key("macs")), .int(9_007_199_254_740_992)) }),
        ("operating_points[0].params", "out of range (expected ≥ 1)", { $0.setting(op(0, .key("params")), .int(-5)) }),
        ("operating_points[0].artifact_bytes", "out of range (expected ≥ 0)",
         { $0.setting(op(0, .key("artifact_bytes")), .int(-1)) }),
        ("operating_points[0].artifact_resolutions", "out of range",
         { $0.setting(op(0, .key("artifact_resolutions")), .int(0)) }),
        ("operating_points[0].resolution", "-224 is out of range (expected ≥ 1 and ≤ 65536)",
         { $0.setting(op(0, .key("resolution")), .int(-224)) }),
        ("operating_points[0].resolution", "out of range", { $0.setting(op(0, .key("resolution")), .int(65537)) }),
        ("operating_points[0].stage_scales[1]", "out of range (expected > 0)",
         { $0.setting(op(0, .key("stage_scales")), .array([.double(1), .double(0)])) }),
        ("operating_points[0].stage_scales[0]", "finite",
         { $0.setting(op(0, .key("stage_scales")), .array([.double(-.infinity)])) }),
        ("operating_points[0].top1_data.samples", "out of range",
         { $0.setting(op(0, .key("top1_data"), .key("samples")), .int(0)) }),
        ("operating_points[0].entry", "does not match", { $0.setting(op(0, .key("entry")), .string("forward 224")) }),
        ("operating_points[0].entry", "does not match", { $0.setting(op(0, .key("entry")), .string("../forward_224")) }),
        ("operating_points[0].artifact", "not a safe relative path",
         { $0.setting(op(0, .key("artifact")), .string("executorch/./model_fp32.pte")) }),
        ("operating_points[12]", "duplicate operating point (224, executorch, fp32, XNNPACK), the same as operating_points[0]",
         { $0.setting(op(12), $0.at(op(0))) }),
        // devices
        ("devices.phone.gemm_peak_gflops", "out of range (expected > 0)",
         { $0.setting(phone + [.key("gemm_peak_gflops")], .double(0)) }),
        ("devices.phone.latency_models[0].threads", "out of range",
         { $0.setting(phone + [.key("latency_models")], .array([model(threads: -2)])) }),
        ("devices.phone.latency_models[0].points", "out of range",
         { $0.setting(phone + [.key("latency_models")], .array([model(points: 0)])) }),
        ("devices.phone.latency_models[1]", "duplicate (runtime, precision, compute unit, threads)",
         { $0.setting(phone + [.key("latency_models")], .array([model(), model()])) }),
        ("devices.phone.switch_costs[0].load_file_ms", "out of range (expected ≥ 0)",
         { $0.setting(phone + [.key("switch_costs")], .array([.object([
             "runtime": .string("executorch"), "precision": .string("fp32"), "switch_loaded_ms": .double(1),
             "switch_first_ms": .double(2), "load_file_ms": .double(-3)])])) }),
    ]

    func testTheBaseLutIsValid() throws {
        XCTAssertEqual(try Lut.fromJSON(try base()).operatingPoints.count, 12)
    }

    func testEveryOutOfRangeValueIsRefusedNamingTheField() throws {
        let doc = try base()
        for (n, c) in SchemaRangesTests.cases.enumerated() {
            guard let m = message(c.mutate(doc)) else {
                XCTFail("case \(n) (\(c.path)): accepted")
                continue
            }
            XCTAssertTrue(m.hasPrefix("lut.json: \(c.path): "), "case \(n): \(m)")
            XCTAssertTrue(m.contains(c.problem), "case \(n): '\(m)' should say '\(c.problem)'")
        }
    }

    func testBadSchemaVersionsAreRefused() throws {
        let doc = try base()
        for v in ["1.garbage", "1.", "1", "01.0", "1.0 ", "1.x1", "2.0", "1.0.1", "1.٣"] {
            let m = message(doc.setting([.key("schema_version")], .string(v))) ?? "accepted"
            XCTAssertTrue(m.hasPrefix("lut.json: schema_version \"\(v)\" is not supported by this reader"), m)
        }
        XCTAssertNotNil(message(doc.setting([.key("schema_version")], .double(1.5))))
        for v in ["1.0", "1.7", "1.42"] {
            XCTAssertNil(message(doc.setting([.key("schema_version")], .string(v))), v)
        }
    }

    func testNonFiniteTextIsRefusedNamingTheFile() throws {
        // JSONDecoder refuses bare NaN / Infinity / 1e999: the error names the file (as Python's reader).
        for bad in ["NaN", "Infinity", "1e999"] {
            let doc = try base()
            let data = try JSONSerialization.data(withJSONObject: try XCTUnwrap(GoldenAny.plain(doc)))
            let broken = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\"runs\":50", with: "\"runs\":\(bad)")
            XCTAssertNotEqual(broken, String(decoding: data, as: UTF8.self))
            XCTAssertThrowsError(try Lut.parse(Data(broken.utf8), source: "lut.json")) { error in
                XCTAssertTrue("\(error)".hasPrefix("lut.json: "), "\(error)")
            }
        }
    }

    func testTheEdgesOfEachRangeAreAccepted() throws {
        var doc = try base()
        doc = doc.setting(SchemaRangesTests.op(0, .key("top1")), .int(0))
        doc = doc.setting(SchemaRangesTests.op(1, .key("top1")), .int(1))
        doc = doc.setting(SchemaRangesTests.op(2, .key("top1")), .null)
        for (k, v) in [("threads", JSONValue.int(0)), ("runs", .int(1)), ("p99_ms", .double(44)), ("energy_mj", .int(0))] {
            doc = doc.setting(SchemaRangesTests.lat + [.key(k)], v)
        }
        doc = doc.setting(SchemaRangesTests.lat + [.key("p90_ms")], nil)  // checked only when present
        doc = doc.setting(SchemaRangesTests.op(0, .key("macs")), .int(9_007_199_254_740_991))
        doc = doc.setting(SchemaRangesTests.op(0, .key("artifact_bytes")), .int(0))
        doc = doc.setting(SchemaRangesTests.op(3, .key("resolution")), .int(65536))
        doc = doc.setting(SchemaRangesTests.op(4, .key("resolution")), .int(1))
        let lut = try Lut.fromJSON(doc, source: "lut.json")
        XCTAssertEqual(lut.operatingPoints[0].macs, 9_007_199_254_740_991)
        XCTAssertNil(lut.operatingPoints[2].top1)
        XCTAssertEqual(lut.operatingPoints[1].top1, 1)
    }

    func testUnsafeAndCanonicalPaths() {
        for bad in ["", "/abs.pte", "../x.pte", "a/../b.pte", "a//b.pte", "a/", "./a.pte", "~/a.pte", "a\\b.pte",
                    "a/\u{1}b.pte", ".", "a/\u{7f}"] {
            XCTAssertNotNil(SchemaRules.pathProblem(bad), bad)
        }
        for good in ["a.pte", "executorch/model_fp32.pte", "coreml/model.mlpackage", "a/b/c..d", "...x"] {
            XCTAssertNil(SchemaRules.pathProblem(good), good)
        }
        XCTAssertTrue(SchemaRules.isName("forward_224"))
        XCTAssertTrue(SchemaRules.isName(String(repeating: "x", count: 128)))
        for bad in ["", ".x", "-x", "a b", "a/b", String(repeating: "x", count: 129), "é"] {
            XCTAssertFalse(SchemaRules.isName(bad), bad)
        }
        XCTAssertTrue(SchemaRules.isSha256(String(repeating: "0f", count: 32)))
        XCTAssertFalse(SchemaRules.isSha256(String(repeating: "0F", count: 32)))
        XCTAssertFalse(SchemaRules.isSha256(String(repeating: "0", count: 63)))
    }
}

/// JSONValue → Foundation objects (for JSONSerialization in tests).
enum GoldenAny {
    static func plain(_ v: JSONValue) -> Any? {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map { plain($0) ?? NSNull() }
        case .object(let o): return o.mapValues { plain($0) ?? NSNull() }
        }
    }
}
