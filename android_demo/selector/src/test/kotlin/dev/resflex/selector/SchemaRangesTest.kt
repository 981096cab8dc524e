package dev.resflex.selector

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * The ranges of mobile/bundle/schema.py `RULES` in the Kotlin lut.json reader: one valid golden LUT, broken one
 * field at a time (a table, one row per rule); every error must name the file and the field path.
 */
class SchemaRangesTest {
    /** A fresh copy of the golden case budget_fits's LUT (12 points, device "phone"). */
    private fun base(): JSONObject {
        val cases = GoldenCases.golden().getJSONArray("cases")
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            if (c.getString("name") == "budget_fits") return JSONObject(c.getJSONObject("lut").toString())
        }
        throw AssertionError("no golden case budget_fits")
    }

    private fun op(doc: JSONObject, i: Int = 0): JSONObject = doc.getJSONArray("operating_points").getJSONObject(i)

    private fun latencies(doc: JSONObject): JSONArray = op(doc).getJSONObject("latency").getJSONArray("phone")

    private fun latency(doc: JSONObject): JSONObject = latencies(doc).getJSONObject(0)

    /** Replace latency entry 0 by a copy with `name` = `value` — a JSONObject built from a Map keeps NaN/∞. */
    private fun latencyWith(doc: JSONObject, name: String, value: Any) {
        val old = latency(doc)
        val map = HashMap<String, Any?>()
        val keys = old.keys()
        while (keys.hasNext()) {
            val k = keys.next()
            map[k] = old.opt(k)
        }
        map[name] = value
        latencies(doc).put(0, JSONObject(map))
    }

    private fun model(): JSONObject = JSONObject().put("runtime", "executorch").put("precision", "fp32")
        .put("compute_unit", "XNNPACK").put("threads", 4).put("intercept_ms", 1.5).put("ms_per_gmac", 120.0)
        .put("mean_abs_rel_error", 0.05).put("points", 4)

    private fun phone(doc: JSONObject): JSONObject = doc.getJSONObject("devices").getJSONObject("phone")

    /** One bad document: the field path the error must name, a fragment of the problem, and how to break it. */
    private class Case(val path: String, val problem: String, val mutate: (JSONObject) -> Unit)

    private val lat = "operating_points[0].latency.phone[0]"

    private val cases = listOf(
        // latency: finite, > 0, ordered, runs ≥ 1, threads in [0, 4096], unique (runtime, threads)
        Case("$lat.p50_ms", "finite") { latencyWith(it, "p50_ms", Double.NaN) },
        Case("$lat.p99_ms", "finite") { latencyWith(it, "p99_ms", Double.POSITIVE_INFINITY) },
        Case("$lat.p50_ms", "out of range (expected > 0)") { latency(it).put("p50_ms", -40.0) },
        Case("$lat.p90_ms", "out of range (expected > 0)") { latency(it).put("p90_ms", 0) },
        Case(lat, "expected p50 ≤ p90 ≤ p99, got 50, 44, 48") { latency(it).put("p50_ms", 50.0) },
        Case(lat, "expected p50 ≤ p90 ≤ p99") { latency(it).put("p90_ms", 49.0) },
        Case("$lat.runs", "0 is out of range (expected ≥ 1)") { latency(it).put("runs", 0) },
        Case("$lat.threads", "-1 is out of range (expected ≥ 0 and ≤ 4096)") { latency(it).put("threads", -1) },
        Case("$lat.threads", "out of range") { latency(it).put("threads", 5000) },
        Case("$lat.energy_mj", "out of range (expected ≥ 0)") { latency(it).put("energy_mj", -2.0) },
        Case("$lat.gflops", "out of range") { latency(it).put("gflops", -1.0) },
        Case("operating_points[0].latency.phone[1]", "duplicate (runtime, threads) (executorch, 4)") {
            latencies(it).put(JSONObject(latency(it).toString()))
        },
        Case("operating_points[0].latency", "device tablet is not in devices") {
            op(it).getJSONObject("latency").put("tablet", JSONArray())
        },
        // the operating point
        Case("operating_points[0].top1", "1.5 is out of range (expected ≥ 0 and ≤ 1)") { op(it).put("top1", 1.5) },
        Case("operating_points[0].top1", "out of range") { op(it).put("top1", -0.1) },
        Case("operating_points[0].macs", "0 is out of range (expected ≥ 1)") { op(it).put("macs", 0) },
        Case("operating_points[0].macs", "integers are at most 2^53 − 1") { op(it).put("macs", 9007199254740992L) },
        Case("operating_points[0].params", "out of range (expected ≥ 1)") { op(it).put("params", -5) },
        Case("operating_points[0].artifact_bytes", "out of range (expected ≥ 0)") { op(it).put("artifact_bytes", -1) },
        Case("operating_points[0].artifact_resolutions", "out of range") { op(it).put("artifact_resolutions", 0) },
        Case("operating_points[0].resolution", "-224 is out of range (expected ≥ 1 and ≤ 65536)") {
            op(it).put("resolution", -224)
        },
        Case("operating_points[0].resolution", "out of range") { op(it).put("resolution", 65537) },
        Case("operating_points[0].stage_scales[1]", "out of range (expected > 0)") {
            op(it).put("stage_scales", JSONArray().put(1.0).put(0.0))
        },
        Case("operating_points[0].top1_data.samples", "out of range") {
            op(it).getJSONObject("top1_data").put("samples", 0)
        },
        Case("operating_points[0].entry", "does not match") { op(it).put("entry", "forward 224") },
        Case("operating_points[0].entry", "does not match") { op(it).put("entry", "../forward_224") },
        Case("operating_points[0].artifact", "not a safe relative path") {
            op(it).put("artifact", "executorch/./model_fp32.pte")
        },
        Case("operating_points[12]", "duplicate operating point (224, executorch, fp32, XNNPACK), the same as " +
            "operating_points[0]") { it.getJSONArray("operating_points").put(JSONObject(op(it).toString())) },
        // devices
        Case("devices.phone.gemm_peak_gflops", "out of range (expected > 0)") {
            phone(it).put("gemm_peak_gflops", 0.0)
        },
        Case("devices.phone.latency_models[0].threads", "out of range") {
            phone(it).put("latency_models", JSONArray().put(model().put("threads", -2)))
        },
        Case("devices.phone.latency_models[0].points", "out of range") {
            phone(it).put("latency_models", JSONArray().put(model().put("points", 0)))
        },
        Case("devices.phone.latency_models[1]", "duplicate (runtime, precision, compute unit, threads)") {
            phone(it).put("latency_models", JSONArray().put(model()).put(model()))
        },
        Case("devices.phone.switch_costs[0].load_file_ms", "out of range (expected ≥ 0)") {
            phone(it).put("switch_costs", JSONArray().put(JSONObject().put("runtime", "executorch")
                .put("precision", "fp32").put("switch_loaded_ms", 1.0).put("switch_first_ms", 2.0)
                .put("load_file_ms", -3.0)))
        }
    )

    private fun message(doc: JSONObject): String? {
        try {
            Lut.fromJson(doc, "lut.json")
        } catch (e: SchemaException) {
            return e.message ?: ""
        }
        return null
    }

    @Test
    fun theBaseLutIsValid() {
        assertEquals(12, Lut.fromJson(base(), "lut.json").operatingPoints.size)
    }

    @Test
    fun everyOutOfRangeValueIsRefusedNamingTheField() {
        for ((n, c) in cases.withIndex()) {
            val doc = base()
            c.mutate(doc)
            val m = message(doc) ?: throw AssertionError("case $n (${c.path}): accepted")
            assertTrue("case $n: '$m' should name lut.json: ${c.path}:", m.startsWith("lut.json: ${c.path}: "))
            assertTrue("case $n: '$m' should say '${c.problem}'", m.contains(c.problem))
        }
    }

    @Test
    fun badSchemaVersionsAreRefused() {
        for (v in listOf<Any>("1.garbage", "1.", "1", "01.0", "1.0 ", "1.x1", "2.0", "1.0.1", 1.0)) {
            val m = message(base().put("schema_version", v)) ?: throw AssertionError("schema_version $v: accepted")
            assertTrue(m, m.startsWith("lut.json: schema_version $v is not supported by this reader"))
        }
        for (v in listOf("1.0", "1.7", "1.42")) assertEquals(null, message(base().put("schema_version", v)))
    }

    @Test
    fun nonFiniteNumbersInTheTextAreRefusedNamingTheFileOrTheField() {
        val text = base().toString()
        // org.json refuses NaN/Infinity as an object member ("not valid JSON", as Python's reader); in a list it
        // reads them, and the range check names the item.
        val m = try {
            Lut.parse(text.replace("\"p50_ms\":40", "\"p50_ms\":NaN"), "lut.json")
            null
        } catch (e: SchemaException) {
            e.message
        }
        assertTrue("$m", m != null && m.startsWith("lut.json: "))
        for (bad in listOf("NaN", "Infinity", "-Infinity", "1e999")) {
            val doc = base()
            op(doc).put("stage_scales", JSONArray().put(1.0))
            val t = doc.toString().replace("\"stage_scales\":[1]", "\"stage_scales\":[1,$bad]")
            assertTrue(t, t.contains("[1,$bad]"))
            try {
                Lut.parse(t, "lut.json")
                fail("stage_scales [1, $bad] accepted")
            } catch (e: SchemaException) {
                assertTrue("${e.message}", (e.message ?: "").startsWith("lut.json: operating_points[0].stage_scales[1]: "))
            }
        }
    }

    @Test
    fun theEdgesOfEachRangeAreAccepted() {
        val doc = base()
        op(doc).put("top1", 0.0)
        op(doc, 1).put("top1", 1)
        op(doc, 2).put("top1", JSONObject.NULL)
        latency(doc).put("threads", 0).put("runs", 1).put("p90_ms", 40.0).put("p99_ms", 40.0).put("energy_mj", 0.0)
        op(doc).put("macs", 9007199254740991L).put("params", 1).put("artifact_bytes", 0)
        op(doc, 3).put("resolution", 65536)
        op(doc, 4).put("resolution", 1)
        latency(doc).remove("p90_ms") // fields the selector does not keep are checked only when present
        val lut = Lut.fromJson(doc, "lut.json")
        assertEquals(9007199254740991L, lut.operatingPoints[0].macs)
        assertEquals(null, lut.operatingPoints[2].top1)
    }

    @Test
    fun unsafeAndCanonicalPaths() {
        for (bad in listOf("", "/abs.pte", "../x.pte", "a/../b.pte", "a//b.pte", "a/", "./a.pte", "~/a.pte",
                "a\\b.pte", "a/\u0001b.pte", ".")) {
            assertTrue(bad, SchemaRules.pathProblem(bad) != null)
        }
        for (good in listOf("a.pte", "executorch/model_fp32.pte", "coreml/model.mlpackage", "a/b/c..d", "...x")) {
            assertEquals(good, null, SchemaRules.pathProblem(good))
        }
    }
}
