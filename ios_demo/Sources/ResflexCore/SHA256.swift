import Foundation
#if canImport(CryptoKit)
import CryptoKit
#endif

/// Incremental SHA-256 (FIPS 180-4), pure Swift: the hash on Linux, and the reference the tests check against the
/// NIST vectors on every platform. On Apple platforms `Sha256Stream` uses CryptoKit instead.
public struct PureSHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0  // bytes hashed so far
    private var w = [UInt32](repeating: 0, count: 64)

    public init() {
        buffer.reserveCapacity(64)
    }

    public mutating func update<D: DataProtocol>(_ data: D) {
        for region in data.regions {
            region.withUnsafeBytes { raw in update(raw) }
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var i = 0
        let n = bytes.count
        if !buffer.isEmpty {
            while i < n && buffer.count < 64 {
                buffer.append(bytes[i])
                i += 1
            }
            if buffer.count == 64 {
                buffer.withUnsafeBytes { block($0, 0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        while n - i >= 64 {
            block(bytes, i)
            i += 64
        }
        while i < n {
            buffer.append(bytes[i])
            i += 1
        }
    }

    public mutating func finalize() -> [UInt8] {
        let bits = length &* 8
        var pad: [UInt8] = [0x80]
        let used = (buffer.count + 1) % 64
        pad += [UInt8](repeating: 0, count: used <= 56 ? 56 - used : 120 - used)
        for s in stride(from: 56, through: 0, by: -8) { pad.append(UInt8(truncatingIfNeeded: bits >> UInt64(s))) }
        let saved = length
        pad.withUnsafeBytes { update($0) }
        length = saved
        precondition(buffer.isEmpty)
        var out: [UInt8] = []
        for v in h {
            out += [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16),
                    UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
        }
        return out
    }

    @inline(__always) private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 {
        return (x >> n) | (x << (32 - n))
    }

    private mutating func block(_ p: UnsafeRawBufferPointer, _ offset: Int) {
        for t in 0..<16 {
            let o = offset + 4 * t
            w[t] = UInt32(p[o]) << 24 | UInt32(p[o + 1]) << 16 | UInt32(p[o + 2]) << 8 | UInt32(p[o + 3])
        }
        for t in 16..<64 {
            let s0 = PureSHA256.rotr(w[t - 15], 7) ^ PureSHA256.rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = PureSHA256.rotr(w[t - 2], 17) ^ PureSHA256.rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let s1 = PureSHA256.rotr(e, 6) ^ PureSHA256.rotr(e, 11) ^ PureSHA256.rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ PureSHA256.k[t] &+ w[t]
            let s0 = PureSHA256.rotr(a, 2) ^ PureSHA256.rotr(a, 13) ^ PureSHA256.rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g
            g = f
            f = e
            e = d &+ t1
            d = c
            c = b
            b = a
            a = t1 &+ t2
        }
        h[0] = h[0] &+ a
        h[1] = h[1] &+ b
        h[2] = h[2] &+ c
        h[3] = h[3] &+ d
        h[4] = h[4] &+ e
        h[5] = h[5] &+ f
        h[6] = h[6] &+ g
        h[7] = h[7] &+ hh
    }
}

/// The SHA-256 the bundle reader uses: CryptoKit where it exists (Apple platforms), else `PureSHA256`.
public struct Sha256Stream {
    #if canImport(CryptoKit)
    private var hasher = CryptoKit.SHA256()
    #else
    private var hasher = PureSHA256()
    #endif

    public init() {}

    public mutating func update<D: DataProtocol>(_ data: D) {
        hasher.update(data: data)
    }

    /// Lower-case hex digest.
    public mutating func hexDigest() -> String {
        #if canImport(CryptoKit)
        let bytes = Array(hasher.finalize())
        #else
        let bytes = hasher.finalize()
        #endif
        return Sha256Stream.hex(bytes)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// sha256 of bytes, lower-case hex.
    public static func hex<D: DataProtocol>(of data: D) -> String {
        var s = Sha256Stream()
        s.update(data)
        return s.hexDigest()
    }
}

#if !canImport(CryptoKit)
extension PureSHA256 {
    mutating func update<D: DataProtocol>(data: D) { update(data) }
}
#endif
