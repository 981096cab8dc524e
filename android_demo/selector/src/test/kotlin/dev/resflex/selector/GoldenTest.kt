package dev.resflex.selector

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Test
import org.junit.runner.RunWith
import org.junit.runners.Parameterized

/**
 * Replays every case of selector_golden.json (a byte-identical copy of tests/golden/selector_golden.json):
 * Selector(lut, device, policy, compute_units); per step choose(state) must equal `expected` (point, index, class, source and
 * reason exactly; predicted_ms and budget_ms rounded to 6 decimals, within 1e-6), then observe(d, observed_ms)
 * when observed_ms is not null. One JUnit test per case.
 */
@RunWith(Parameterized::class)
class GoldenTest(private val name: String, private val case: JSONObject) {
    companion object {
        @JvmStatic
        @Parameterized.Parameters(name = "{0}")
        fun cases(): Collection<Array<Any>> = GoldenCases.cases()
    }

    /** The case's optional compute_units: artifact file → the units it is offered on. */
    private fun computeUnits(): Map<String, List<String>>? {
        val units = case.optJSONObject("compute_units") ?: return null
        val out = LinkedHashMap<String, List<String>>()
        for (artifact in units.keys()) out[artifact] = strings(units.getJSONArray(artifact))
        return out
    }

    @Test
    fun replay() {
        val selector = Selector(Lut.fromJson(case.getJSONObject("lut"), "case $name lut"), case.getString("device"),
            Policy.fromJson(case.getJSONObject("policy"), Policy.DEFAULT, "case $name policy"), computeUnits())
        val steps = case.getJSONArray("steps")
        val problems = ArrayList<String>()
        for (n in 0 until steps.length()) {
            val step = steps.getJSONObject(n)
            val d = selector.choose(GoldenCases.state(step.getJSONObject("state")))
            val want = step.getJSONObject("expected")
            val got = linkedMapOf<String, Any>(
                "index" to d.index, "resolution" to d.point.resolution, "backend" to d.point.backend,
                "precision" to d.point.precision, "compute_unit" to d.point.computeUnit, "unit_class" to d.unitClass,
                "latency_source" to d.latencySource, "reason" to d.reason
            )
            for ((k, v) in got) {
                val w = if (k == "reason") strings(want.getJSONArray(k)) else want.get(k)
                if (v != w) problems.add("step $n: $k is $v, expected $w")
            }
            for (k in listOf("predicted_ms", "budget_ms")) {
                val v = GoldenCases.round6(if (k == "predicted_ms") d.predictedMs else d.budgetMs)
                val w = want.getDouble(k)
                if (!(Math.abs(v - w) <= 1e-6)) problems.add("step $n: $k is $v, expected $w")
            }
            val observed = step.opt("observed_ms")
            if (observed != null && observed != JSONObject.NULL) selector.observe(d, GoldenCases.decode(observed))
        }
        if (problems.isNotEmpty()) fail("golden case $name:\n" + problems.joinToString("\n"))
    }

    private fun strings(a: JSONArray): List<String> {
        val out = ArrayList<String>()
        for (i in 0 until a.length()) out.add(a.getString(i))
        return out
    }
}
