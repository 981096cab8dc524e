package dev.resflex.core

import java.nio.ByteBuffer

/** An upright 8-bit RGB image, row-major, 3 bytes (R, G, B) per pixel, top row first. */
class RgbImage(val width: Int, val height: Int, val rgb: ByteArray) {
    init {
        require(width > 0 && height > 0) { "image size must be positive, got ${width}x$height" }
        require(rgb.size == width * height * 3) { "expected ${width * height * 3} RGB bytes, got ${rgb.size}" }
    }

    /** Channel `c` (0 R, 1 G, 2 B) of pixel (x, y), 0..255. */
    fun at(x: Int, y: Int, c: Int): Int = rgb[(y * width + x) * 3 + c].toInt() and 0xff
}

/**
 * One plane of a CameraX `ImageProxy` in YUV_420_888 (`planes[i].buffer`, `rowStride`, `pixelStride`). Sample
 * (x, y) of the plane is at `buffer[position + y * rowStride + x * pixelStride]`.
 */
class Plane(val buffer: ByteBuffer, val rowStride: Int, val pixelStride: Int) {
    constructor(data: ByteArray, rowStride: Int, pixelStride: Int) : this(ByteBuffer.wrap(data), rowStride, pixelStride)

    private val base = buffer.position()

    fun at(x: Int, y: Int): Int = buffer.get(base + y * rowStride + x * pixelStride).toInt() and 0xff
}

/**
 * The one preprocessing algorithm of tests/golden/README.md (`InputSpec.interpolation == "bilinear_antialias"`):
 * frame → upright RGB (rotate first) → v / 255 → resize the shorter side to `resize_shorter_to` with separable
 * antialiased bilinear (PyTorch `interpolate(bilinear, align_corners=False, antialias=True)`, width pass first)
 * → centre crop → (x − mean) / std → the artifact's layout (NCHW or NHWC, batch 1, row-major). Matches
 * `resflex.mobile.preprocess` within 1e-4 (float32 accumulation order, amplified by 1 / std).
 */
object Preprocess {
    @JvmField
    val ROTATIONS = intArrayOf(0, 90, 180, 270)

    private fun checkRotation(rotation: Int) {
        require(rotation == 0 || rotation == 90 || rotation == 180 || rotation == 270) {
            "rotation must be 0, 90, 180 or 270 (clockwise degrees to upright), got $rotation"
        }
    }

    /**
     * The upright RGB image of a `width × height` frame rotated clockwise by `rotation`: `copy(s, out, o)` writes the
     * R, G, B of source pixel `s` (index y * width + x of the frame as it lies) to `out[o..o+2]`.
     */
    private inline fun upright(width: Int, height: Int, rotation: Int, copy: (Int, ByteArray, Int) -> Unit): RgbImage {
        val turned = rotation == 90 || rotation == 270
        val ow = if (turned) height else width
        val oh = if (turned) width else height
        val out = ByteArray(ow * oh * 3)
        var o = 0
        for (y in 0 until oh) {
            for (x in 0 until ow) {
                copy(source(rotation, width, height, x, y), out, o)
                o += 3
            }
        }
        return RgbImage(ow, oh, out)
    }

    /** Source pixel of upright pixel (x, y) for a `w × h` frame rotated clockwise by `rotation`: y * w + x. */
    private fun source(rotation: Int, w: Int, h: Int, x: Int, y: Int): Int = when (rotation) {
        90 -> (h - 1 - x) * w + y
        180 -> (h - 1 - y) * w + (w - 1 - x)
        270 -> x * w + (w - 1 - y)
        else -> y * w + x
    }

    /**
     * Android `Bitmap.getPixels` ARGB ints (alpha ignored) → upright RGB; `rotation` is the clockwise rotation
     * that makes the frame upright (CameraX `imageInfo.rotationDegrees`).
     */
    @JvmStatic
    @JvmOverloads
    fun fromArgb(pixels: IntArray, width: Int, height: Int, rotation: Int = 0, offset: Int = 0,
                 stride: Int = width): RgbImage {
        checkRotation(rotation)
        require(width > 0 && height > 0 && stride >= width && offset >= 0 &&
            offset + (height - 1) * stride + width <= pixels.size) { "pixels do not hold a ${width}x$height frame" }
        return upright(width, height, rotation) { s, out, o ->
            val p = pixels[offset + (s / width) * stride + s % width]
            out[o] = (p shr 16).toByte()
            out[o + 1] = (p shr 8).toByte()
            out[o + 2] = p.toByte()
        }
    }

    /** 8-bit RGBA bytes (alpha ignored), row-major → upright RGB. */
    @JvmStatic
    @JvmOverloads
    fun fromRgba(rgba: ByteArray, width: Int, height: Int, rotation: Int = 0): RgbImage {
        checkRotation(rotation)
        require(width > 0 && height > 0 && rgba.size == width * height * 4) {
            "expected ${width * height * 4} RGBA bytes for ${width}x$height, got ${rgba.size}"
        }
        return upright(width, height, rotation) { s, out, o ->
            out[o] = rgba[4 * s]
            out[o + 1] = rgba[4 * s + 1]
            out[o + 2] = rgba[4 * s + 2]
        }
    }

    /**
     * CameraX YUV_420_888 planes → upright RGB. Chroma is subsampled 2×2 (sample (x/2, y/2)); BT.601 limited
     * range: c = Y − 16, d = U − 128, e = V − 128, R = 1.164c + 1.596e, G = 1.164c − 0.392d − 0.813e,
     * B = 1.164c + 2.017d, each rounded half away from zero and clamped to [0, 255].
     */
    @JvmStatic
    @JvmOverloads
    fun fromYuv420(y: Plane, u: Plane, v: Plane, width: Int, height: Int, rotation: Int = 0): RgbImage {
        checkRotation(rotation)
        val rgb = yuv420ToRgb(y, u, v, width, height)
        if (rotation == 0) return RgbImage(width, height, rgb)
        return upright(width, height, rotation) { s, out, o ->
            out[o] = rgb[3 * s]
            out[o + 1] = rgb[3 * s + 1]
            out[o + 2] = rgb[3 * s + 2]
        }
    }

    /** YUV_420_888 → RGB bytes as the frame lies (no rotation). */
    @JvmStatic
    fun yuv420ToRgb(y: Plane, u: Plane, v: Plane, width: Int, height: Int): ByteArray {
        require(width > 0 && height > 0) { "frame size must be positive, got ${width}x$height" }
        val out = ByteArray(width * height * 3)
        var o = 0
        for (row in 0 until height) {
            for (x in 0 until width) {
                val c = (y.at(x, row) - 16).toDouble()
                val d = (u.at(x / 2, row / 2) - 128).toDouble()
                val e = (v.at(x / 2, row / 2) - 128).toDouble()
                out[o] = byte(1.164 * c + 1.596 * e)
                out[o + 1] = byte(1.164 * c - 0.392 * d - 0.813 * e)
                out[o + 2] = byte(1.164 * c + 2.017 * d)
                o += 3
            }
        }
        return out
    }

    private fun byte(x: Double): Byte {
        val r = if (x < 0) -Math.floor(-x + 0.5) else Math.floor(x + 0.5)
        return (if (r < 0.0) 0.0 else if (r > 255.0) 255.0 else r).toInt().toByte()
    }

    /** Resized size (height, width) for the shorter side `r`, as `resflex.mobile.data.resize`. */
    @JvmStatic
    fun resizedSize(height: Int, width: Int, r: Int): IntArray {
        return if (height <= width) intArrayOf(r, Math.floor(r.toLong() * width / height.toDouble()).toInt())
        else intArrayOf(Math.floor(r.toLong() * height / width.toDouble()).toInt(), r)
    }

    /** The input tensor of one entry: `spec` applied to `image`, in `layout` ("NCHW" or "NHWC"), flattened. */
    @JvmStatic
    fun toInput(image: RgbImage, spec: InputSpec, layout: String): FloatArray {
        require(Manifest.INTERPOLATIONS.contains(spec.interpolation)) {
            "InputSpec.interpolation ${spec.interpolation} is not implemented; expected bilinear_antialias"
        }
        require(layout == "NCHW" || layout == "NHWC") { "layout must be NCHW or NHWC, got $layout" }
        val w = image.width
        val h = image.height
        val size = resizedSize(h, w, spec.resizeShorterTo)
        val rh = size[0]
        val rw = size[1]
        val crop = spec.crop
        require(crop in 1..rh && crop <= rw) { "crop $crop is larger than the resized image ${rw}x$rh" }
        val top = (rh - crop) / 2
        val left = (rw - crop) / 2
        val resize = !(rh == h && rw == w)
        // [0, 1] in float32, planar.
        val plane = w * h
        val src = FloatArray(3 * plane)
        for (i in 0 until plane) {
            for (c in 0 until 3) src[c * plane + i] = (image.rgb[i * 3 + c].toInt() and 0xff).toFloat() / 255f
        }
        val out = FloatArray(3 * crop * crop)
        val mean = FloatArray(3)
        val std = FloatArray(3)
        for (c in 0 until 3) {
            mean[c] = spec.mean[c].toFloat()
            std[c] = spec.std[c].toFloat()
        }
        val cropped = FloatArray(crop * crop)
        for (c in 0 until 3) {
            if (resize) {
                // Width pass (only the columns the crop keeps), then the height pass (only the rows it keeps).
                val wx = Weights(w, rw, left, crop)
                val tmp = FloatArray(h * crop)
                for (y in 0 until h) {
                    val row = c * plane + y * w
                    for (i in 0 until crop) {
                        var acc = 0.0
                        val lo = wx.lo[i]
                        val k = wx.start[i]
                        for (j in 0 until wx.count[i]) acc += wx.w[k + j] * src[row + lo + j]
                        tmp[y * crop + i] = acc.toFloat()
                    }
                }
                val wy = Weights(h, rh, top, crop)
                for (r in 0 until crop) {
                    val lo = wy.lo[r]
                    val k = wy.start[r]
                    for (i in 0 until crop) {
                        var acc = 0.0
                        for (j in 0 until wy.count[r]) acc += wy.w[k + j] * tmp[(lo + j) * crop + i]
                        cropped[r * crop + i] = acc.toFloat()
                    }
                }
            } else {
                for (r in 0 until crop) {
                    for (i in 0 until crop) cropped[r * crop + i] = src[c * plane + (top + r) * w + left + i]
                }
            }
            for (r in 0 until crop) {
                for (i in 0 until crop) {
                    val value = (cropped[r * crop + i] - mean[c]) / std[c]
                    if (layout == "NCHW") out[c * crop * crop + r * crop + i] = value
                    else out[(r * crop + i) * 3 + c] = value
                }
            }
        }
        return out
    }

    /**
     * Antialiased bilinear weights of one axis (input length n → output length m) for outputs first..first+count−1:
     * scale = n / m, support = max(scale, 1), center = scale (i + 0.5), lo = max(trunc(center − support + 0.5), 0),
     * hi = min(trunc(center + support + 0.5), n), w_j = max(0, 1 − |(j − center + 0.5) / max(scale, 1)|), normalised.
     */
    internal class Weights(n: Int, m: Int, first: Int, outputs: Int) {
        val lo = IntArray(outputs)
        val count = IntArray(outputs)
        val start = IntArray(outputs)
        val w: DoubleArray

        init {
            val scale = n.toDouble() / m
            val support = if (scale >= 1.0) scale else 1.0
            val inv = if (scale >= 1.0) 1.0 / scale else 1.0
            val all = ArrayList<Double>()
            for (k in 0 until outputs) {
                val i = first + k
                val center = scale * (i + 0.5)
                val a = Math.max((center - support + 0.5).toLong(), 0L).toInt()
                val b = Math.min((center + support + 0.5).toLong(), n.toLong()).toInt()
                lo[k] = a
                start[k] = all.size
                var total = 0.0
                val ws = DoubleArray(Math.max(b - a, 0))
                for (j in a until b) {
                    val x = 1.0 - Math.abs((j - center + 0.5) * inv)
                    ws[j - a] = if (x > 0.0) x else 0.0
                    total += ws[j - a]
                }
                for (j in ws.indices) all.add(if (total != 0.0) ws[j] / total else ws[j])
                this.count[k] = ws.size
            }
            w = DoubleArray(all.size)
            for (j in all.indices) w[j] = all[j]
        }
    }
}
