package dev.resflex.core

import dev.resflex.selector.GoldenCases
import dev.resflex.selector.Lut
import dev.resflex.selector.Policy
import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Test
import org.junit.runner.RunWith
import org.junit.runners.Parameterized

/**
 * Every case of tests/golden/selector_golden.json (the selector module's test resource) replayed through the
 * whole FrameLoop: a bundle synthesised from the case's LUT, a fake engine, scripted signals (the golden `state`
 * of each step: thermal rises, battery falls, load bursts, bad sensors) and a fake clock whose measured inference
 * time is the step's `observed_ms`. Each frame's decision and reason codes must equal the golden `expected`, and
 * the engine must have run the chosen entry. Where the golden step has no observation (`observed_ms` null) the
 * clock measures NaN, which `Selector.observe` ignores exactly as if it had not been called; non-numeric golden
 * observations ("fast") are measured as NaN as well, the others as their value.
 */
@RunWith(Parameterized::class)
class FrameLoopReplayTest(private val name: String, private val case: JSONObject) {
    companion object {
        @JvmStatic
        @Parameterized.Parameters(name = "{0}")
        fun cases(): Collection<Array<Any>> = GoldenCases.cases()

        /** The clock's reading for a golden observation: its number, or NaN (no observation / not a number). */
        fun measured(observed: Any?): Double {
            val v = GoldenCases.decode(observed)
            return if (v is Number) v.toDouble() else Double.NaN
        }
    }

    @Test
    fun replay() {
        // A case with compute_units holds LUT points no bundle may carry (a CPU-only artifact on GPU): ResflexBundle
        // refuses them (the hostile-bundle table), so only the selector replays it (GoldenTest).
        if (case.has("compute_units")) return
        val lut = Lut.fromJson(case.getJSONObject("lut"), "case $name lut")
        val policy = Policy.fromJson(case.getJSONObject("policy"), Policy.DEFAULT, "case $name policy")
        val bundle = Synth.bundle(lut, numClasses = 3)
        val engine = FakeEngine(3)
        val signals = ScriptedSignals()
        val clock = ScriptedClock()
        val loop = FrameLoop(bundle, case.getString("device"), engine, signals, clock, policy)
        assertEquals(0, loop.start().size)
        val frame = Synth.frame()
        val steps = case.getJSONArray("steps")
        val problems = ArrayList<String>()
        for (n in 0 until steps.length()) {
            val step = steps.getJSONObject(n)
            signals.state = GoldenCases.state(step.getJSONObject("state"))
            val observed = measured(step.opt("observed_ms"))
            clock.push(0.0, observed)
            val r = loop.process(frame)
            if (r.error != null) {
                problems.add("step $n: error ${r.error}")
                continue
            }
            val d = r.decision!!
            val want = step.getJSONObject("expected")
            val got = linkedMapOf<String, Any>(
                "index" to d.index, "resolution" to d.point.resolution, "backend" to d.point.backend,
                "precision" to d.point.precision, "compute_unit" to d.point.computeUnit, "unit_class" to d.unitClass,
                "latency_source" to d.latencySource, "reason" to r.reason
            )
            for ((k, v) in got) {
                val w: Any = if (k == "reason") strings(want.getJSONArray(k)) else want.get(k)
                if (v != w) problems.add("step $n: $k is $v, expected $w")
            }
            for (k in listOf("predicted_ms", "budget_ms")) {
                val v = GoldenCases.round6(if (k == "predicted_ms") d.predictedMs else r.budgetMs!!)
                val w = want.getDouble(k)
                if (!(Math.abs(v - w) <= 1e-6)) problems.add("step $n: $k is $v, expected $w")
            }
            val ran = engine.ran[engine.ran.size - 1]
            if (ran != "${d.point.entry}@${d.point.computeUnit}") problems.add("step $n: engine ran $ran")
            val lat = r.latencyMs!!
            if (!(lat == observed || (lat.isNaN() && observed.isNaN()))) {
                problems.add("step $n: measured $lat, expected $observed")
            }
            if (r.point!!.point.resolution != d.point.resolution) problems.add("step $n: result point differs")
            if (r.top[0].index != d.point.resolution % 3) problems.add("step $n: top-1 is ${r.top[0]}")
        }
        assertEquals(0, clock.remaining())
        assertEquals(steps.length(), engine.ran.size)
        if (problems.isNotEmpty()) fail("golden case $name through FrameLoop:\n" + problems.joinToString("\n"))
    }

    private fun strings(a: JSONArray): List<String> {
        val out = ArrayList<String>()
        for (i in 0 until a.length()) out.add(a.getString(i))
        return out
    }
}
