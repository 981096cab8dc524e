package dev.resflex.selector

import java.math.BigDecimal
import java.math.RoundingMode
import org.json.JSONObject

/**
 * Reading selector_golden.json (a byte-identical copy of tests/golden/selector_golden.json, a test resource of this
 * module): its cases as JUnit parameters, its value encoding, device states and Python's rounding. Shared by the
 * selector's GoldenTest and the core's FrameLoop replay (Gradle test fixtures).
 */
object GoldenCases {
    fun golden(): JSONObject {
        val stream = GoldenCases::class.java.getResourceAsStream("/selector_golden.json")
            ?: throw IllegalStateException("selector_golden.json is not on the test classpath " +
                "(android_demo/selector/src/test/resources)")
        return JSONObject(stream.bufferedReader(Charsets.UTF_8).use { it.readText() })
    }

    /** Every case as (name, case) for a Parameterized runner. */
    fun cases(): Collection<Array<Any>> {
        val doc = golden()
        check(doc.getString("kind") == "resflex.selector_golden") { "selector_golden.json: kind is ${doc.getString("kind")}" }
        val cases = doc.getJSONArray("cases")
        val out = ArrayList<Array<Any>>()
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            out.add(arrayOf<Any>(c.getString("name"), c))
        }
        return out
    }

    /** The golden file's encoding: "NaN", "Infinity", "-Infinity" → doubles; JSON null → null; else as is. */
    fun decode(value: Any?): Any? = when (value) {
        null, JSONObject.NULL -> null
        "NaN" -> Double.NaN
        "Infinity" -> Double.POSITIVE_INFINITY
        "-Infinity" -> Double.NEGATIVE_INFINITY
        else -> value
    }

    fun state(s: JSONObject): DeviceState = DeviceState(decode(s.opt("battery")), decode(s.opt("charging")),
        decode(s.opt("power_save")), decode(s.opt("thermal")), decode(s.opt("cpu_load")),
        decode(s.opt("thermal_scale")))

    /** Python's round(x, 6): the exact binary value rounded half-to-even. */
    fun round6(x: Double): Double = BigDecimal(x).setScale(6, RoundingMode.HALF_EVEN).toDouble()
}
