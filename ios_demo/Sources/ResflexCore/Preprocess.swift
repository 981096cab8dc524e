import Foundation

/// The byte order of a 4-channel 8-bit pixel (alpha ignored). iOS camera frames (kCVPixelFormatType_32BGRA) are BGRA.
public enum PixelFormat: Sendable {
    case rgba
    case bgra
}

/// A frame's orientation, as CGImagePropertyOrientation / UIImage.Orientation name it (`rawValue` equals
/// CGImagePropertyOrientation's): how the stored pixels are turned relative to upright. Mirrored orientations are
/// not supported (mirror the frame first).
public enum FrameOrientation: UInt32 {
    case up = 1
    case down = 3
    case left = 8
    case right = 6

    /// The clockwise rotation (0, 90, 180, 270) that makes the frame upright (CameraX's `rotationDegrees`).
    public var rotation: Int {
        switch self {
        case .up: return 0
        case .right: return 90
        case .down: return 180
        case .left: return 270
        }
    }
}

/// 8-bit pixels, row-major, top row first, `bytesPerRow` ≥ 4 × width (rows may be padded, as CVPixelBuffer's).
public struct PixelFrame: Sendable {
    public let width: Int
    public let height: Int
    public let bytesPerRow: Int
    public let format: PixelFormat
    public let bytes: [UInt8]

    public init(width: Int, height: Int, bytesPerRow: Int? = nil, format: PixelFormat = .rgba, bytes: [UInt8]) throws {
        let stride = bytesPerRow ?? width * 4
        guard width > 0, height > 0, stride >= width * 4, bytes.count >= stride * (height - 1) + width * 4 else {
            throw PreprocessError("frame \(width)×\(height) with \(stride) bytes per row needs at least "
                + "\(max(stride * (height - 1) + width * 4, 0)) bytes, got \(bytes.count)")
        }
        self.width = width
        self.height = height
        self.bytesPerRow = stride
        self.format = format
        self.bytes = bytes
    }
}

public struct PreprocessError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// The one preprocessing algorithm of tests/golden/README.md (what `resflex eval`/`convert` measured the LUT's
/// accuracy with): rotate upright, [0, 1], resize the shorter side with separable antialiased bilinear (PyTorch
/// `interpolate(bilinear, align_corners=False, antialias=True)`, width pass first), centre crop, (x − mean) / std,
/// NCHW or NHWC. Only the output pixels inside the crop are computed (each depends only on its own weights, so the
/// values are those of resizing the whole image and cropping).
public enum Preprocess {
    public static let interpolations: Set<String> = ["bilinear_antialias", "bilinear"]  // "bilinear": older bundles

    /// The input tensor's shape, batch 1.
    public static func shape(_ spec: InputSpec, layout: Layout) -> [Int] {
        return layout == .nchw ? [1, 3, spec.crop, spec.crop] : [1, spec.crop, spec.crop, 3]
    }

    /// The resized size (height, width) of an upright h × w image (README step 3).
    public static func resizedSize(height h: Int, width w: Int, shorter r: Int) -> (Int, Int) {
        if h <= w {
            return (r, Int((Double(r * w) / Double(h)).rounded(.down)))
        }
        return (Int((Double(r * h) / Double(w)).rounded(.down)), r)
    }

    /// Weights of output indices `from ..< from + count` of an n → m antialiased bilinear resize (README step 4).
    static func weights(n: Int, m: Int, from: Int, count: Int) -> [(lo: Int, w: [Double])] {
        var out: [(lo: Int, w: [Double])] = []
        out.reserveCapacity(count)
        let scale = Double(n) / Double(m)
        let support = scale >= 1 ? scale : 1.0
        let inv = scale >= 1 ? 1.0 / scale : 1.0
        for i in from..<(from + count) {
            let center = scale * (Double(i) + 0.5)
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), n)
            var w: [Double] = []
            var total = 0.0
            if lo < hi {
                for j in lo..<hi {
                    let v = max(0.0, 1.0 - abs((Double(j) - center + 0.5) * inv))
                    w.append(v)
                    total += v
                }
            }
            if total > 0 {
                for k in 0..<w.count { w[k] /= total }
            }
            out.append((lo, w))
        }
        return out
    }

    /// A frame → the artifact's batch-1 input, flattened in `layout`. `rotation`: the clockwise rotation (0, 90, 180,
    /// 270) that makes the frame upright.
    public static func tensor(_ frame: PixelFrame, rotation: Int, spec: InputSpec, layout: Layout) throws -> [Float] {
        guard [0, 90, 180, 270].contains(rotation) else {
            throw PreprocessError("rotation must be 0, 90, 180 or 270, got \(rotation)")
        }
        guard interpolations.contains(spec.interpolation) else {
            throw PreprocessError("InputSpec.interpolation \"\(spec.interpolation)\" is not supported; expected "
                + "\"bilinear_antialias\"")
        }
        guard spec.mean.count == 3, spec.std.count == 3 else { throw PreprocessError("InputSpec: mean and std need 3 values") }
        // Upright size.
        let (uh, uw) = rotation % 180 == 0 ? (frame.height, frame.width) : (frame.width, frame.height)
        let r = spec.resizeShorterTo
        guard r >= 1 else { throw PreprocessError("InputSpec.resize_shorter_to must be ≥ 1, got \(r)") }
        let (rh, rw) = resizedSize(height: uh, width: uw, shorter: r)
        let crop = spec.crop
        guard crop >= 1, crop <= rh, crop <= rw else {
            throw PreprocessError("center crop \(crop)×\(crop) is larger than the resized image \(rh)×\(rw)")
        }
        let top = (rh - crop) / 2
        let left = (rw - crop) / 2
        // Upright (y, x) → byte offset of the pixel in the stored frame.
        let fw = frame.width, fh = frame.height, stride = frame.bytesPerRow
        func offset(_ y: Int, _ x: Int) -> Int {
            let sy: Int, sx: Int
            switch rotation {
            case 90: sy = fh - 1 - x; sx = y
            case 180: sy = fh - 1 - y; sx = fw - 1 - x
            case 270: sy = x; sx = fw - 1 - y
            default: sy = y; sx = x
            }
            return sy * stride + sx * 4
        }
        let (ri, bi) = frame.format == .rgba ? (0, 2) : (2, 0)
        let colW = weights(n: uw, m: rw, from: left, count: crop)
        let rowW = weights(n: uh, m: rh, from: top, count: crop)
        let sameW = rw == uw, sameH = rh == uh
        // Input rows the height pass reads.
        var rowsNeeded = [Bool](repeating: false, count: uh)
        for (i, rwt) in rowW.enumerated() {
            if sameH { rowsNeeded[top + i] = true; continue }
            for k in 0..<rwt.w.count { rowsNeeded[rwt.lo + k] = true }
        }
        // Width pass: horizontal[y][x][c] for the needed rows, x in the crop.
        var horizontal = [Float](repeating: 0, count: uh * crop * 3)
        frame.bytes.withUnsafeBufferPointer { px in
            for y in 0..<uh where rowsNeeded[y] {
                for x in 0..<crop {
                    var acc = (0.0, 0.0, 0.0)
                    if sameW {
                        let o = offset(y, left + x)
                        acc = (Double(Float(px[o + ri]) / 255), Double(Float(px[o + 1]) / 255), Double(Float(px[o + bi]) / 255))
                    } else {
                        let cw = colW[x]
                        for k in 0..<cw.w.count {
                            let o = offset(y, cw.lo + k)
                            let wk = cw.w[k]
                            acc.0 += wk * Double(Float(px[o + ri]) / 255)
                            acc.1 += wk * Double(Float(px[o + 1]) / 255)
                            acc.2 += wk * Double(Float(px[o + bi]) / 255)
                        }
                    }
                    let h = (y * crop + x) * 3
                    horizontal[h] = Float(acc.0)
                    horizontal[h + 1] = Float(acc.1)
                    horizontal[h + 2] = Float(acc.2)
                }
            }
        }
        // Height pass, normalise, lay out.
        var out = [Float](repeating: 0, count: 3 * crop * crop)
        let mean = spec.mean.map { Float($0) }
        let std = spec.std.map { Float($0) }
        for y in 0..<crop {
            let rwt = rowW[y]
            for x in 0..<crop {
                for c in 0..<3 {
                    var v: Float
                    if sameH {
                        v = horizontal[((top + y) * crop + x) * 3 + c]
                    } else {
                        var acc = 0.0
                        for k in 0..<rwt.w.count {
                            acc += rwt.w[k] * Double(horizontal[((rwt.lo + k) * crop + x) * 3 + c])
                        }
                        v = Float(acc)
                    }
                    v = (v - mean[c]) / std[c]
                    let index = layout == .nchw ? (c * crop + y) * crop + x : (y * crop + x) * 3 + c
                    out[index] = v
                }
            }
        }
        return out
    }
}
