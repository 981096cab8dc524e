import Foundation
import XCTest
import ResflexSelector
@testable import ResflexCore

/// What `BundleReader.open` did with a bundle, given a time bound (a reader that blocks on a FIFO never returns).
enum OpenOutcome: Equatable {
    case ok
    case refused(String)
    /// An error of another type than BundleError escaped the reader.
    case foreignError(String)
    case hung

    var verdict: String {
        switch self {
        case .ok: return "ok"
        case .refused: return "reject"
        case .foreignError(let e): return "foreign error \(e)"
        case .hung: return "hung"
        }
    }
}

/// `BundleReader.open(url)` (every backend verified, as at app load) on a thread, waiting at most `seconds`.
func openWithin(_ url: URL, backends: Set<String>? = nil, seconds: Double = 10) -> OpenOutcome {
    final class Box: @unchecked Sendable { var outcome = OpenOutcome.hung }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        do {
            _ = try BundleReader.open(url, backends: backends)
            box.outcome = .ok
        } catch let e as BundleError {
            box.outcome = .refused(e.message)
        } catch {
            box.outcome = .foreignError("\(type(of: error)): \(error)")
        }
        done.signal()
    }
    thread.start()
    return done.wait(timeout: .now() + seconds) == .timedOut ? .hung : box.outcome
}

/// The hostile-bundle table shared by the three readers (tests/adversarial/hostile_bundles.py writes it; scripts/test.sh
/// exports RESFLEX_HOSTILE_DIR): every case must be accepted or refused (with a BundleError, in time) as Python does.
final class HostileBundleTests: XCTestCase {
    func testSharedHostileTable() throws {
        guard let path = ProcessInfo.processInfo.environment["RESFLEX_HOSTILE_DIR"] else {
            throw XCTSkip("RESFLEX_HOSTILE_DIR not set (scripts/test.sh generates the table)")
        }
        let table = URL(fileURLWithPath: path).appendingPathComponent("cases.json")
        guard let data = FileManager.default.contents(atPath: table.path) else {
            return XCTFail("RESFLEX_HOSTILE_DIR is set but \(table.path) is missing")
        }
        let cases = try XCTUnwrap(JSONValue.parse(data).arrayValue, "\(table.path): expected a list of cases")
        XCTAssertFalse(cases.isEmpty, "\(table.path): no cases")
        var agree = 0
        for c in cases {
            let name = try XCTUnwrap(c["name"]?.stringValue, "\(table.path): a case without a name")
            let expect = try XCTUnwrap(c["expect"]?.stringValue, "\(name): no expect")
            XCTAssertTrue(expect == "ok" || expect == "reject", "\(name): expect is \(expect)")
            let outcome = openWithin(URL(fileURLWithPath: path).appendingPathComponent(name))
            if outcome.verdict == expect {
                agree += 1
            } else {
                XCTFail("\(name): expected \(expect) (\(c["why"]?.stringValue ?? "")), got \(outcome)")
            }
        }
        print("hostile bundles: \(cases.count) cases, \(agree) agree")
    }
}
