import XCTest
@testable import ResflexCore

/// Reading and writing Core ML multi-arrays through their strides (CoreMLEngine): padded rows, transposed and
/// broadcast layouts, and layouts that do not fit their storage.
final class StridedLayoutTests: XCTestCase {
    func testContiguousOffsetsAreTheIdentity() throws {
        XCTAssertEqual(try StridedLayout.offsets(shape: [2, 3], strides: [3, 1]), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try StridedLayout.offsets(shape: [], strides: []), [0])
        XCTAssertEqual(try StridedLayout.offsets(shape: [1, 0, 4], strides: [0, 4, 1]), [])
    }

    func testPaddedRowsAreSkipped() throws {
        // 1 × 2 × 3 logits whose rows are padded to 4 scalars (what an aligned Core ML output buffer looks like).
        let storage: [Float] = [1, 2, 3, -99, 4, 5, 6, -99]
        let values = try storage.withUnsafeBufferPointer {
            try StridedLayout.gather($0, shape: [1, 2, 3], strides: [8, 4, 1])
        }
        XCTAssertEqual(values, [1, 2, 3, 4, 5, 6])
    }

    func testTransposedAndBroadcastLayouts() throws {
        let columnMajor: [Float] = [1, 4, 2, 5, 3, 6]  // a 2 × 3 array stored column by column
        XCTAssertEqual(try columnMajor.withUnsafeBufferPointer {
            try StridedLayout.gather($0, shape: [2, 3], strides: [1, 2])
        }, [1, 2, 3, 4, 5, 6])
        let row: [Float] = [7, 8]
        XCTAssertEqual(try row.withUnsafeBufferPointer {
            try StridedLayout.gather($0, shape: [3, 2], strides: [0, 1])
        }, [7, 8, 7, 8, 7, 8])
    }

    func testScatterWritesThroughStrides() throws {
        var storage = [Float](repeating: 0, count: 8)
        try storage.withUnsafeMutableBufferPointer {
            try StridedLayout.scatter([1, 2, 3, 4, 5, 6], into: $0, shape: [2, 3], strides: [4, 1])
        }
        XCTAssertEqual(storage, [1, 2, 3, 0, 4, 5, 6, 0])
    }

    func testLayoutsThatDoNotFitAreRejected() {
        let storage: [Float] = [1, 2, 3, 4, 5]
        XCTAssertThrowsError(try storage.withUnsafeBufferPointer {
            try StridedLayout.gather($0, shape: [2, 3], strides: [3, 1])  // needs 6 scalars
        }) { XCTAssertTrue("\($0)".contains("reaches element 5 of a storage of 5"), "\($0)") }
        XCTAssertThrowsError(try StridedLayout.offsets(shape: [2, 3], strides: [1])) {
            XCTAssertTrue("\($0)".contains("2 dimensions but strides [1] has 1"), "\($0)")
        }
        XCTAssertThrowsError(try StridedLayout.offsets(shape: [2, 3], strides: [3, -1])) {
            XCTAssertTrue("\($0)".contains("dimension 1"), "\($0)")
        }
        var small = [Float](repeating: 0, count: 4)
        XCTAssertThrowsError(try small.withUnsafeMutableBufferPointer {
            try StridedLayout.scatter([1, 2, 3], into: $0, shape: [2, 2], strides: [2, 1])
        }) { XCTAssertTrue("\($0)".contains("holds 4 values, got 3"), "\($0)") }
        XCTAssertEqual(small, [0, 0, 0, 0])
    }
}
