import Foundation
import XCTest
import ResflexGolden
import ResflexSelector
@testable import ResflexCore

/// Replays every case of preprocess_golden.json (a byte-identical copy of tests/golden/preprocess_golden.json,
/// written by Python): RGBA frame + rotation + InputSpec + layout → the input tensor, within the file's tolerance.
/// The same frames as BGRA and with padded rows must give the same tensors. (yuv_cases are Android-only.)
final class PreprocessGoldenTests: XCTestCase {
    struct Case {
        let name: String
        let width: Int
        let height: Int
        let rotation: Int
        let rgba: [UInt8]
        let spec: InputSpec
        let layout: Layout
        let shape: [Int]
        let expected: [Double]
    }

    func load() throws -> (tolerance: Double, cases: [Case]) {
        let doc = try JSONValue.parse(Golden.data("preprocess_golden"))
        XCTAssertEqual(doc["kind"]?.stringValue, "resflex.preprocess_golden")
        XCTAssertEqual(doc["schema_version"]?.stringValue?.components(separatedBy: ".").first, "1")
        let tolerance = try XCTUnwrap(doc["tolerance"]?.doubleValue)
        var cases: [Case] = []
        for c in try XCTUnwrap(doc["cases"]?.arrayValue) {
            let input = try XCTUnwrap(c["input"])
            let spec = InputSpec(resolution: try XCTUnwrap(input["resolution"]?.intValue),
                                 resizeShorterTo: try XCTUnwrap(input["resize_shorter_to"]?.intValue),
                                 crop: try XCTUnwrap(input["crop"]?.intValue),
                                 mean: try XCTUnwrap(input["mean"]?.arrayValue).compactMap { $0.doubleValue },
                                 std: try XCTUnwrap(input["std"]?.arrayValue).compactMap { $0.doubleValue },
                                 interpolation: try XCTUnwrap(input["interpolation"]?.stringValue))
            cases.append(Case(name: try XCTUnwrap(c["name"]?.stringValue), width: try XCTUnwrap(c["width"]?.intValue),
                              height: try XCTUnwrap(c["height"]?.intValue),
                              rotation: try XCTUnwrap(c["rotation"]?.intValue),
                              rgba: try XCTUnwrap(c["rgba"]?.arrayValue).map { UInt8($0.intValue!) }, spec: spec,
                              layout: try XCTUnwrap(Layout(rawValue: c["layout"]?.stringValue ?? "")),
                              shape: try XCTUnwrap(c["shape"]?.arrayValue).map { $0.intValue! },
                              expected: try XCTUnwrap(c["expected"]?.arrayValue).map { $0.doubleValue! }))
        }
        XCTAssertFalse(cases.isEmpty)
        return (tolerance, cases)
    }

    @discardableResult
    func check(_ c: Case, _ frame: PixelFrame, _ tolerance: Double, _ what: String) throws -> Double {
        let got = try Preprocess.tensor(frame, rotation: c.rotation, spec: c.spec, layout: c.layout)
        XCTAssertEqual(Preprocess.shape(c.spec, layout: c.layout), c.shape, c.name)
        XCTAssertEqual(got.count, c.expected.count, c.name)
        var worst = 0.0
        for (g, e) in zip(got, c.expected) { worst = max(worst, abs(Double(g) - e)) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(c.name) (\(what)): max abs error \(worst)")
        return worst
    }

    func testEveryGoldenCase() throws {
        let (tolerance, cases) = try load()
        XCTAssertEqual(tolerance, 1e-4)
        var worst = 0.0
        for c in cases {
            worst = max(worst, try check(c, try PixelFrame(width: c.width, height: c.height, format: .rgba,
                                                            bytes: c.rgba), tolerance, "RGBA"))
        }
        print("replayed \(cases.count) preprocessing golden cases; max abs error \(worst) (tolerance \(tolerance))")
    }

    func testBGRAAndPaddedRowsGiveTheSameTensors() throws {
        let (tolerance, cases) = try load()
        for c in cases {
            var bgra = c.rgba
            for p in stride(from: 0, to: bgra.count, by: 4) { bgra.swapAt(p, p + 2) }
            try check(c, try PixelFrame(width: c.width, height: c.height, format: .bgra, bytes: bgra), tolerance, "BGRA")
            let pad = 12
            var padded: [UInt8] = []
            for y in 0..<c.height {
                padded += bgra[(y * c.width * 4)..<((y + 1) * c.width * 4)]
                padded += [UInt8](repeating: 99, count: pad)
            }
            try check(c, try PixelFrame(width: c.width, height: c.height, bytesPerRow: c.width * 4 + pad, format: .bgra,
                                        bytes: padded), tolerance, "BGRA, padded rows")
        }
    }

    func testRotationAndLayoutByHand() throws {
        // A 2×1 frame (red, blue): the shorter side is already 1 (no resize); the 1×1 crop starts at (2 − 1) / 2 = 0,
        // so it is the first pixel of the upright frame: red (0°, 90° clockwise: red on top), blue (180°, 270°).
        let frame = try PixelFrame(width: 2, height: 1, bytes: [255, 0, 0, 255, 0, 0, 255, 255])
        let spec = InputSpec(resolution: 1, resizeShorterTo: 1, crop: 1, mean: [0, 0, 0], std: [1, 1, 1])
        XCTAssertEqual(try Preprocess.tensor(frame, rotation: 0, spec: spec, layout: .nchw), [1, 0, 0])
        XCTAssertEqual(try Preprocess.tensor(frame, rotation: 90, spec: spec, layout: .nchw), [1, 0, 0])
        XCTAssertEqual(try Preprocess.tensor(frame, rotation: 180, spec: spec, layout: .nchw), [0, 0, 1])
        XCTAssertEqual(try Preprocess.tensor(frame, rotation: 270, spec: spec, layout: .nchw), [0, 0, 1])
        // A 2×2 frame resized to 1×1 with the antialias kernel (support 2): the plain average.
        let quad = try PixelFrame(width: 2, height: 2, bytes: [255, 0, 0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try Preprocess.tensor(quad, rotation: 0, spec: spec, layout: .nchw), [0.25, 0.25, 0.25])
        // NCHW vs NHWC of a 2×2 crop, normalised.
        let four = try PixelFrame(width: 2, height: 2, bytes: [0, 51, 102, 0, 255, 51, 102, 0,
                                                               0, 51, 102, 0, 255, 51, 102, 0])
        let s2 = InputSpec(resolution: 2, resizeShorterTo: 2, crop: 2, mean: [0.5, 0.2, 0.4], std: [0.5, 0.1, 0.2])
        let nchw = try Preprocess.tensor(four, rotation: 0, spec: s2, layout: .nchw)
        let nhwc = try Preprocess.tensor(four, rotation: 0, spec: s2, layout: .nhwc)
        XCTAssertEqual(nchw, [-1, 1, -1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(nhwc, [-1, 0, 0, 1, 0, 0, -1, 0, 0, 1, 0, 0])
    }

    func testOrientationAndBadInput() throws {
        XCTAssertEqual([FrameOrientation.up, .right, .down, .left].map { $0.rotation }, [0, 90, 180, 270])
        XCTAssertEqual(FrameOrientation(rawValue: 6), .right)  // CGImagePropertyOrientation.right
        XCTAssertEqual(Preprocess.resizedSize(height: 1080, width: 1920, shorter: 256).1, 455)
        XCTAssertEqual(Preprocess.resizedSize(height: 1920, width: 1080, shorter: 256).0, 455)
        let frame = try PixelFrame(width: 4, height: 4, bytes: [UInt8](repeating: 0, count: 64))
        let spec = InputSpec(resolution: 3, resizeShorterTo: 3, crop: 3, mean: [0, 0, 0], std: [1, 1, 1])
        XCTAssertThrowsError(try Preprocess.tensor(frame, rotation: 45, spec: spec, layout: .nchw))
        var nearest = spec
        nearest.interpolation = "nearest"
        XCTAssertThrowsError(try Preprocess.tensor(frame, rotation: 0, spec: nearest, layout: .nchw)) { error in
            XCTAssertTrue("\(error)".contains("\"nearest\" is not supported"))
        }
        var big = spec
        big.crop = 5
        XCTAssertThrowsError(try Preprocess.tensor(frame, rotation: 0, spec: big, layout: .nchw))
        XCTAssertThrowsError(try PixelFrame(width: 4, height: 4, bytes: [UInt8](repeating: 0, count: 63)))
    }
}
