package dev.resflex.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Test
import org.junit.runner.RunWith
import org.junit.runners.Parameterized

/**
 * Replays tests/golden/preprocess_golden.json (byte-identical copy in src/test/resources), emitted by
 * `python -m resflex.mobile.preprocess --emit-golden`: every RGBA case through the ARGB (Bitmap) path and the
 * RGBA path, within the file's tolerance (1e-4 absolute: float32 accumulation order amplified by 1 / std);
 * every YUV case exactly (integers).
 */
@RunWith(Parameterized::class)
class PreprocessGoldenTest(private val name: String, private val kind: String, private val case: JSONObject) {
    companion object {
        fun golden(): JSONObject {
            val stream = PreprocessGoldenTest::class.java.getResourceAsStream("/preprocess_golden.json")
                ?: throw IllegalStateException("preprocess_golden.json is not on the test classpath")
            return JSONObject(stream.bufferedReader(Charsets.UTF_8).use { it.readText() })
        }

        @JvmStatic
        @Parameterized.Parameters(name = "{1} {0}")
        fun cases(): Collection<Array<Any>> {
            val doc = golden()
            assertEquals("resflex.preprocess_golden", doc.getString("kind"))
            assertEquals("1", doc.getString("schema_version").split(".")[0])
            val out = ArrayList<Array<Any>>()
            val cases = doc.getJSONArray("cases")
            for (i in 0 until cases.length()) {
                out.add(arrayOf<Any>(cases.getJSONObject(i).getString("name"), "rgba", cases.getJSONObject(i)))
            }
            val yuv = doc.getJSONArray("yuv_cases")
            for (i in 0 until yuv.length()) {
                out.add(arrayOf<Any>(yuv.getJSONObject(i).getString("name"), "yuv", yuv.getJSONObject(i)))
            }
            return out
        }

        fun bytes(a: JSONArray): ByteArray {
            val out = ByteArray(a.length())
            for (i in 0 until a.length()) out[i] = a.getInt(i).toByte()
            return out
        }

        fun plane(o: JSONObject): Plane = Plane(bytes(o.getJSONArray("data")), o.getInt("row_stride"),
            o.getInt("pixel_stride"))
    }

    @Test
    fun replay() {
        if (kind == "yuv") yuv() else rgba()
    }

    private fun rgba() {
        val tolerance = golden().getDouble("tolerance")
        val w = case.getInt("width")
        val h = case.getInt("height")
        val rotation = case.getInt("rotation")
        val rgba = bytes(case.getJSONArray("rgba"))
        val spec = Manifest.fromJson(JSONObject()
            .put("kind", "resflex.manifest").put("schema_version", "1.0").put("model", Synth.model(2))
            .put("resolutions", JSONArray()).put("inputs", JSONArray().put(case.getJSONObject("input")))
            .put("artifacts", JSONArray()), "golden case $name").inputs[0]
        val layout = case.getString("layout")
        val shape = case.getJSONArray("shape")
        val crop = spec.crop
        assertEquals(if (layout == "NHWC") listOf(1, crop, crop, 3) else listOf(1, 3, crop, crop),
            listOf(shape.getInt(0), shape.getInt(1), shape.getInt(2), shape.getInt(3)))
        val argb = IntArray(w * h)
        for (i in 0 until w * h) {
            val r = rgba[i * 4].toInt() and 0xff
            val g = rgba[i * 4 + 1].toInt() and 0xff
            val b = rgba[i * 4 + 2].toInt() and 0xff
            argb[i] = (0xff shl 24) or (r shl 16) or (g shl 8) or b
        }
        val expected = case.getJSONArray("expected")
        val viaArgb = Preprocess.toInput(Preprocess.fromArgb(argb, w, h, rotation), spec, layout)
        val viaRgba = Preprocess.toInput(Preprocess.fromRgba(rgba, w, h, rotation), spec, layout)
        assertArrayEquals(viaArgb, viaRgba, 0f)
        assertEquals(expected.length(), viaArgb.size)
        var worst = 0.0
        val problems = ArrayList<String>()
        for (i in 0 until expected.length()) {
            val d = Math.abs(viaArgb[i] - expected.getDouble(i))
            if (d > worst) worst = d
            if (!(d <= tolerance) && problems.size < 10) problems.add("[$i] ${viaArgb[i]} vs ${expected.getDouble(i)}")
        }
        if (problems.isNotEmpty()) fail("golden case $name: max |diff| $worst > $tolerance: $problems")
    }

    private fun yuv() {
        val w = case.getInt("width")
        val h = case.getInt("height")
        val y = plane(case.getJSONObject("y"))
        val u = plane(case.getJSONObject("u"))
        val v = plane(case.getJSONObject("v"))
        val want = bytes(case.getJSONArray("expected_rgba"))
        val rgb = Preprocess.yuv420ToRgb(y, u, v, w, h)
        val wantRgb = ByteArray(w * h * 3)
        for (i in 0 until w * h) for (c in 0 until 3) wantRgb[i * 3 + c] = want[i * 4 + c]
        assertArrayEquals("yuv case $name", wantRgb, rgb)
        // With a rotation: the same as rotating the expected RGBA frame.
        for (rotation in Preprocess.ROTATIONS) {
            val got = Preprocess.fromYuv420(y, u, v, w, h, rotation)
            val ref = Preprocess.fromRgba(want, w, h, rotation)
            assertEquals(ref.width, got.width)
            assertArrayEquals("yuv case $name rotation $rotation", ref.rgb, got.rgb)
        }
    }
}
