package dev.resflex.core

import java.nio.ByteBuffer
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Test

/** Hand-computed cases of the preprocessing algorithm (tests/golden/README.md). */
class PreprocessTest {
    private fun spec(resize: Int, crop: Int, mean: Double = 0.0, std: Double = 1.0) =
        InputSpec(crop, resize, crop, listOf(mean, mean, mean), listOf(std, std, std), "bilinear_antialias")

    /** 3 × 2 frame, pixel value = index (R), 10 + index (G), 20 + index (B). */
    private fun frame(): IntArray = IntArray(6) { (0xff shl 24) or (it shl 16) or ((10 + it) shl 8) or (20 + it) }

    private fun reds(img: RgbImage): List<Int> {
        val out = ArrayList<Int>()
        for (y in 0 until img.height) for (x in 0 until img.width) out.add(img.at(x, y, 0))
        return out
    }

    @Test
    fun rotationsAreClockwiseToUpright() {
        // 0 1 2
        // 3 4 5
        assertEquals(listOf(0, 1, 2, 3, 4, 5), reds(Preprocess.fromArgb(frame(), 3, 2, 0)))
        val r90 = Preprocess.fromArgb(frame(), 3, 2, 90)
        assertEquals(2, r90.width)
        assertEquals(3, r90.height)
        assertEquals(listOf(3, 0, 4, 1, 5, 2), reds(r90))
        assertEquals(listOf(5, 4, 3, 2, 1, 0), reds(Preprocess.fromArgb(frame(), 3, 2, 180)))
        assertEquals(listOf(2, 5, 1, 4, 0, 3), reds(Preprocess.fromArgb(frame(), 3, 2, 270)))
        val g = Preprocess.fromArgb(frame(), 3, 2, 90)
        assertEquals(13, g.at(0, 0, 1))
        assertEquals(23, g.at(0, 0, 2))
    }

    @Test
    fun argbWithOffsetAndStride() {
        val padded = IntArray(2 + 2 * 5)
        val f = frame()
        for (y in 0 until 2) for (x in 0 until 3) padded[2 + y * 5 + x] = f[y * 3 + x]
        assertEquals(listOf(0, 1, 2, 3, 4, 5), reds(Preprocess.fromArgb(padded, 3, 2, 0, 2, 5)))
    }

    @Test
    fun badRotationIsRefused() {
        try {
            Preprocess.fromArgb(frame(), 3, 2, 45)
            fail("rotation 45 accepted")
        } catch (e: IllegalArgumentException) {
            assertEquals(true, e.message!!.contains("rotation"))
        }
    }

    @Test
    fun resizedSizeFloorsTheLongSide() {
        assertArrayEquals(intArrayOf(7, 10), Preprocess.resizedSize(9, 13, 7)) // 7 * 13 / 9 = 10.11
        assertArrayEquals(intArrayOf(9, 6), Preprocess.resizedSize(14, 9, 6)) // 6 * 14 / 9 = 9.33
        assertArrayEquals(intArrayOf(256, 341), Preprocess.resizedSize(480, 640, 256))
    }

    @Test
    fun antialiasWeightsByHand() {
        // n = 4 → m = 2: scale 2, support 2; output 0: center 1, j in 0..2, w = 1 − |(j − 0.5) / 2| → .75 .75 .25
        val w = Preprocess.Weights(4, 2, 0, 2)
        assertEquals(0, w.lo[0])
        assertEquals(3, w.count[0])
        assertEquals(0.75 / 1.75, w.w[0], 1e-15)
        assertEquals(0.75 / 1.75, w.w[1], 1e-15)
        assertEquals(0.25 / 1.75, w.w[2], 1e-15)
        // output 1: center 3, j in 1..3 (hi clamped to n = 4): .25 .75 .75
        assertEquals(1, w.lo[1])
        assertEquals(3, w.count[1])
        assertEquals(0.25 / 1.75, w.w[3], 1e-15)
        // Upscale 2 → 4: scale 0.5, support 1, output 0: center 0.25, j in 0..1 → w 1 − |j + .25| → .75, 0 → 1, 0
        val up = Preprocess.Weights(2, 4, 0, 4)
        assertEquals(1.0, up.w[up.start[0]], 1e-15)
        // output 1: center .75 → j 0: 1 − .25 = .75, j 1: 1 − .75 = .25
        assertEquals(0.75, up.w[up.start[1]], 1e-15)
        assertEquals(0.25, up.w[up.start[1] + 1], 1e-15)
    }

    @Test
    fun downscaleByTwoByHand() {
        // One row 4 × 4 image of red values [0, 255, 0, 255] repeated: resize to 2 × 2, crop 2, mean 0, std 1.
        val px = IntArray(16) { if (it % 2 == 1) (0xff shl 24) or (255 shl 16) else (0xff shl 24) }
        val out = Preprocess.toInput(Preprocess.fromArgb(px, 4, 4), spec(2, 2), "NCHW")
        // Output 0 = (.75·0 + .75·1 + .25·0) / 1.75 = 3/7; output 1 = (.25·1 + .75·0 + .75·1) / 1.75 = 4/7.
        assertEquals(3.0 / 7, out[0].toDouble(), 1e-6)
        assertEquals(4.0 / 7, out[1].toDouble(), 1e-6)
        assertEquals(3.0 / 7, out[2].toDouble(), 1e-6)
        assertEquals(0.0, out[4].toDouble(), 1e-7) // green plane
    }

    @Test
    fun cropOnlyAndLayouts() {
        // 4 × 3 frame, resize shorter side 3 = no resize, crop 2 → top 0, left 1.
        val px = IntArray(12) { (0xff shl 24) or ((it * 10) shl 16) or ((it * 10 + 1) shl 8) or (it * 10 + 2) }
        val s = spec(3, 2, 0.5, 0.25)
        val nchw = Preprocess.toInput(Preprocess.fromArgb(px, 4, 3), s, "NCHW")
        val nhwc = Preprocess.toInput(Preprocess.fromArgb(px, 4, 3), s, "NHWC")
        fun norm(v: Int) = ((v / 255f) - 0.5f) / 0.25f
        // kept pixels: indices 1, 2 (row 0) and 5, 6 (row 1)
        val kept = intArrayOf(1, 2, 5, 6)
        for (k in 0 until 4) {
            for (c in 0 until 3) {
                val v = norm(kept[k] * 10 + c)
                assertEquals(v, nchw[c * 4 + k], 0f)
                assertEquals(v, nhwc[k * 3 + c], 0f)
            }
        }
    }

    @Test
    fun yuvByHand() {
        // 2 × 2 frame, one chroma sample: neutral chroma → grey levels.
        val y = Plane(byteArrayOf(16, 235.toByte(), 126, 0), 2, 1)
        val u = Plane(byteArrayOf(128.toByte()), 1, 1)
        val v = Plane(byteArrayOf(128.toByte()), 1, 1)
        val rgb = Preprocess.yuv420ToRgb(y, u, v, 2, 2)
        assertArrayEquals(byteArrayOf(0, 0, 0, 255.toByte(), 255.toByte(), 255.toByte(), 128.toByte(),
            128.toByte(), 128.toByte(), 0, 0, 0), rgb)
        // Red: Y 81, U 90, V 240 → R = 1.164·65 + 1.596·112 = 254.4 → 254; G = 75.66 + 14.896 − 91.056 = −0.5 → 0
        // (half away from zero, clamped); B = 75.66 − 76.646 = −0.986 → −1 → 0.
        val red = Preprocess.yuv420ToRgb(Plane(byteArrayOf(81), 1, 1), Plane(byteArrayOf(90), 1, 1),
            Plane(byteArrayOf(240.toByte()), 1, 1), 1, 1)
        assertArrayEquals(byteArrayOf(254.toByte(), 0, 0), red)
    }

    @Test
    fun planeReadsFromTheBufferPosition() {
        val buf = ByteBuffer.wrap(byteArrayOf(9, 9, 1, 2, 3, 4))
        buf.position(2)
        val p = Plane(buf, 2, 1)
        assertEquals(1, p.at(0, 0))
        assertEquals(4, p.at(1, 1))
    }
}
