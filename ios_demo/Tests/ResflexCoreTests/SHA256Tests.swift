import Foundation
import XCTest
@testable import ResflexCore

/// The pure-Swift SHA-256 (the hash on Linux) against the NIST FIPS 180-4 examples, incremental updates, and the
/// folder hash against mobile/bundle/io.py `sha256_of`.
final class SHA256Tests: XCTestCase {
    func pure(_ bytes: [UInt8]) -> String {
        var h = PureSHA256()
        h.update(bytes)
        return Sha256Stream.hex(h.finalize())
    }

    func testNISTVectors() {
        XCTAssertEqual(pure([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(pure(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(pure(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(pure(Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                                   + "klmnopqrlmnopqrsmnopqrstnopqrstu").utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        var h = PureSHA256()
        let block = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { h.update(block) }
        XCTAssertEqual(Sha256Stream.hex(h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testPaddingBoundariesAndIncrementalUpdates() {
        // Lengths around the 55/56/64-byte padding edges, hashed whole and in uneven pieces, agree with each other
        // and with the platform hasher (CryptoKit on Apple platforms).
        var seed: UInt32 = 1
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000] {
            let bytes = (0..<length).map { _ -> UInt8 in
                seed = seed &* 1103515245 &+ 12345
                return UInt8(truncatingIfNeeded: seed >> 16)
            }
            let whole = pure(bytes)
            var pieces = PureSHA256()
            var i = 0
            var step = 1
            while i < length {
                let j = min(length, i + step)
                pieces.update(Array(bytes[i..<j]))
                i = j
                step = step * 3 % 71 + 1
            }
            XCTAssertEqual(Sha256Stream.hex(pieces.finalize()), whole, "length \(length)")
            XCTAssertEqual(Sha256Stream.hex(of: bytes), whole, "length \(length)")
        }
    }

    func testFolderHashMatchesPythonSha256Of() throws {
        // Expected values from mobile/bundle/io.py sha256_of on the same tree (Python sorts Paths component by
        // component: a/b, a/c/d before a-b).
        let root = try TempDir()
        let pkg = root.url.appendingPathComponent("pkg")
        try root.write("pkg/a/b", "one")
        try root.write("pkg/a-b", "two")
        try root.write("pkg/z", "")
        try root.write("pkg/a/c/d", "four\n")
        try root.write("pkg/Data/w", "é")
        try root.write("pkg/B", "big")
        XCTAssertEqual(try BundleReader.sha256(of: pkg.path),
                       "b825449985dbafa9e6485bf990aec2b25e1208ade186f6a9a453984c72b690ed")
        XCTAssertEqual(try BundleReader.sha256(of: pkg.appendingPathComponent("a/b").path),
                       "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed")
    }
}

/// A temporary folder removed when the test object goes.
final class TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("resflex-test-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    @discardableResult
    func write(_ relative: String, _ text: String) throws -> URL {
        return try write(relative, Data(text.utf8))
    }

    @discardableResult
    func write(_ relative: String, _ data: Data) throws -> URL {
        let file = url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
        return file
    }
}
