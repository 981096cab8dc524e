/// Where each element of a strided n-d array (Core ML's `MLMultiArray`: `shape`, `strides` in scalars) lives in its
/// storage. Core ML does not promise a contiguous layout for arrays it allocates (outputs above all), so the engine
/// reads and writes them through these offsets instead of assuming row-major order.
public struct StridedLayoutError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

public enum StridedLayout {
    /// Storage offset of every element in row-major (C) order: element `i` of the flattened array is at `offsets[i]`.
    /// Throws when shape and strides differ in length, or a size or stride is negative.
    public static func offsets(shape: [Int], strides: [Int]) throws -> [Int] {
        guard shape.count == strides.count else {
            throw StridedLayoutError(
                "shape \(shape) has \(shape.count) dimensions but strides \(strides) has \(strides.count)")
        }
        if let d = shape.indices.first(where: { shape[$0] < 0 || strides[$0] < 0 }) {
            throw StridedLayoutError("dimension \(d): size \(shape[d]) and stride \(strides[d]) must be ≥ 0")
        }
        let count = shape.reduce(1, *)
        var offsets = [Int](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: shape.count)  // the multi-index of element i, last dimension fastest
        var offset = 0
        for i in 0..<count {
            offsets[i] = offset
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < shape[d] { break }
                offset -= index[d] * strides[d]
                index[d] = 0
                d -= 1
            }
        }
        return offsets
    }

    /// The elements of a strided array in row-major order, read from `storage`; throws when an offset falls outside.
    public static func gather<T>(_ storage: UnsafeBufferPointer<T>, shape: [Int], strides: [Int]) throws -> [T] {
        let offsets = try self.offsets(shape: shape, strides: strides)
        if let last = offsets.max(), last >= storage.count {
            throw outside(shape, strides, last, storage.count)
        }
        return offsets.map { storage[$0] }
    }

    /// Write `values` (row-major) into `storage` at the strided offsets; throws on a count mismatch or an offset
    /// outside it (nothing is written then).
    public static func scatter<T>(_ values: [T], into storage: UnsafeMutableBufferPointer<T>, shape: [Int],
                                  strides: [Int]) throws {
        let offsets = try self.offsets(shape: shape, strides: strides)
        guard offsets.count == values.count else {
            throw StridedLayoutError("shape \(shape) holds \(offsets.count) values, got \(values.count)")
        }
        if let last = offsets.max(), last >= storage.count {
            throw outside(shape, strides, last, storage.count)
        }
        for (value, offset) in zip(values, offsets) { storage[offset] = value }
    }

    private static func outside(_ shape: [Int], _ strides: [Int], _ last: Int, _ count: Int) -> StridedLayoutError {
        return StridedLayoutError(
            "shape \(shape) with strides \(strides) reaches element \(last) of a storage of \(count)")
    }
}
