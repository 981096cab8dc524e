package dev.resflex.selector

import java.io.File
import java.nio.file.Files
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The API around the golden replay: defaults, bad input, errors that name the field, bundles. */
class SelectorTest {
    private val golden = GoldenCases.golden()

    private fun case(name: String): JSONObject {
        val cases = golden.getJSONArray("cases")
        for (i in 0 until cases.length()) if (cases.getJSONObject(i).getString("name") == name) return cases.getJSONObject(i)
        throw AssertionError("no golden case $name")
    }

    private fun phoneLut(): Lut = Lut.fromJson(case("budget_fits").getJSONObject("lut"))

    private fun message(block: () -> Unit): String {
        try {
            block()
        } catch (e: IllegalArgumentException) {
            return e.message ?: ""
        }
        fail("expected an IllegalArgumentException")
        return ""
    }

    @Test
    fun defaultPolicyIsThePythonDefault() {
        // budget_fits runs with Python's Policy() written out field by field.
        assertEquals(Policy(), Policy.fromJson(case("budget_fits").getJSONObject("policy")))
    }

    @Test
    fun badSensorValuesNeverThrow() {
        val junk = listOf<Any?>(null, true, false, "", "x", -1, 0, 1, 2, 3, 7, 1.5, -0.0, Double.NaN,
            Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, Long.MAX_VALUE, 0.25f, listOf(1))
        val selector = Selector(phoneLut(), "phone")
        val random = java.util.Random(7)
        for (i in 0 until 2000) {
            fun any(): Any? = junk[random.nextInt(junk.size)]
            val d = selector.choose(DeviceState(any(), any(), any(), any(), any(),
                listOf<Any?>("normalized", "android", "ios", "kelvin", null)[random.nextInt(5)]))
            assertTrue(d.index in 0 until phoneLut().operatingPoints.size)
            assertTrue(d.point == selector.lut.operatingPoints[d.index])
            selector.observe(d, any())
        }
    }

    @Test
    fun observeIgnoresWhatIsNotAPositiveFiniteNumber() {
        val selector = Selector(phoneLut(), "phone")
        val d = selector.choose(DeviceState())
        for (bad in listOf<Any?>(null, true, "12", Double.NaN, Double.POSITIVE_INFINITY, -3.0, 0)) {
            assertFalse("$bad", selector.observe(d, bad))
        }
        assertEquals(1.0, selector.slowdown["cpu"]!!, 0.0)
        assertTrue(selector.observe(d, 44))
        assertTrue(selector.slowdown["cpu"]!! > 1.0)
    }

    @Test
    fun policyErrorsNameTheField() {
        assertTrue(message { Policy.parse("{\"latency_budget\": 20}") }.contains("unknown policy field(s) [latency_budget]"))
        assertTrue(message { Policy.parse("{\"battery_low\": 0.05}") }.contains("battery_low = 0.05"))
        assertTrue(message { Policy.parse("{\"threads\": \"4\"}") }.contains("threads"))
        assertTrue(message { Policy.parse("{\"thermal_budget\": [1, 0.9, 0.95, 0.5]}") }.contains("non-increasing"))
        assertTrue(message { Policy.parse("{\"kind\": \"other\"}") }.contains("kind must be"))
        assertTrue(message { Policy.parse("not json") }.contains("not valid JSON"))
        assertTrue(message { Policy.parse("{\"miss_frames\": 0}") }.contains("miss_frames = 0"))
        assertTrue(message { Policy.parse("{\"probe_window_frames\": 1.5}") }.contains("probe_window_frames"))
        assertEquals(Policy(missFrames = 1, probeWindowFrames = 5),
            Policy.parse("{\"miss_frames\": 1, \"probe_window_frames\": 5}"))
        val p = Policy.parse("{\"latency_budget_ms\": 20, \"battery_critical\": 0.05, \"battery_low\": 0.1}")
        assertEquals(Policy(latencyBudgetMs = 20.0, batteryCritical = 0.05, batteryLow = 0.1), p)
    }

    @Test
    fun lutErrorsNameTheField() {
        val doc = JSONObject(case("budget_fits").getJSONObject("lut").toString())
        doc.getJSONArray("operating_points").getJSONObject(2).remove("macs")
        assertTrue(message { Lut.fromJson(doc, "lut.json") }.contains("lut.json: operating_points[2].macs: expected an integer"))
        doc.put("schema_version", "2.0")
        assertTrue(message { Lut.fromJson(doc, "lut.json") }.contains("schema_version 2.0 is not supported"))
        assertTrue(message { Lut.parse("[]") }.contains("not valid JSON"))
    }

    @Test
    fun fromBundleReadsTheBundlePolicy() {
        val dir = Files.createTempDirectory("resflex-bundle").toFile()
        try {
            File(dir, "lut.json").writeText(case("budget_fits").getJSONObject("lut").toString())
            File(dir, Policy.FILE).writeText("{\"kind\": \"resflex.selector_policy\", \"latency_budget_ms\": 12.0}")
            val selector = Selector.fromBundle(dir, "phone")
            assertEquals(12.0, selector.policy.latencyBudgetMs, 0.0)
            val d = selector.choose(DeviceState())
            assertEquals(160, d.point.resolution)
            assertEquals(listOf("initial", "fits_budget"), d.reason)
        } finally {
            dir.deleteRecursively()
        }
    }
}
