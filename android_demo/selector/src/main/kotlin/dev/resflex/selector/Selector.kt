package dev.resflex.selector

import java.io.File

/**
 * Chooses an operating point per frame from a LUT, a device id and a [Policy]: a line-by-line port of the Python
 * reference (resflex.mobile.selector; its module docstring is the algorithm, steps 1–7 below). It replays the
 * golden vectors (tests/golden/selector_golden.json) with identical decisions. Not thread-safe: one per stream.
 *
 *     val sel = Selector(Lut.parse(lutText), "phone", Policy(latencyBudgetMs = 33.0))
 *     val d = sel.choose(DeviceState(battery = 0.42, thermal = 1, cpuLoad = 0.6))
 *     sel.observe(d, 21.7)
 */
class Selector @JvmOverloads constructor(
    val lut: Lut,
    val device: String,
    val policy: Policy = Policy.DEFAULT,
    /** Artifact file → the compute units manifest.json offers it on (ArtifactInfo.compute_units); null: none. */
    val computeUnits: Map<String, List<String>>? = null
) {
    /** "energy_mj" when every point has a measured energy, else "macs" (a proxy). */
    val energyMetric: String
    /** Per LUT point: "measured" | "model" | "macs". */
    val sources: List<String>
    /** Indices into lut.operatingPoints of the Pareto-optimal points (CPU class first, then accelerators). */
    val candidates: List<Int>

    // Candidate arrays, parallel to `candidates`.
    private val n: Int
    private val cls: IntArray
    private val base: DoubleArray
    private val top1: DoubleArray
    private val energy: DoubleArray
    private val rank: IntArray

    private val slow = doubleArrayOf(1.0, 1.0)
    private var current = -1 // candidate position
    private var calm = 0
    private var wanted = -1 // the step-up point the calm frames wanted
    private var misses = 0 // consecutive deadline misses of the current point (step 6)
    private var lastMs: Double? = null
    private var requiredFrames = policy.hysteresisFrames
    private var window = 0

    /** Switches made since construction or reset(). */
    var switches = 0
        private set

    /** The learnt slowdown per class ("cpu", "accelerator"). */
    val slowdown: Map<String, Double>
        get() = mapOf(CLASS_NAMES[CPU] to slow[CPU], CLASS_NAMES[ACCELERATOR] to slow[ACCELERATOR])

    init {
        val points = lut.operatingPoints
        require(points.isNotEmpty()) { "lut: no operating points to choose from" }
        val count = points.size
        // Step 1: a point on a unit its artifact is not offered on is dropped (never a candidate, dominates nothing).
        val offered = BooleanArray(count)
        for (i in 0 until count) {
            val units = computeUnits?.get(points[i].artifact)
            offered[i] = units == null || contains(units, points[i].computeUnit)
        }
        require(offered.contains(true)) {
            "lut: no operating point is on a compute unit its artifact is offered on (compute_units: $computeUnits)"
        }
        // Base latency and source, class, top-1, energy, key rank.
        val baseAll = DoubleArray(count)
        val sourceAll = ArrayList<String>()
        val mjAll = arrayOfNulls<Double>(count)
        var allMj = true
        for (i in 0 until count) {
            val b = baseLatency(points[i])
            baseAll[i] = b.ms
            sourceAll.add(b.source)
            mjAll[i] = b.energyMj
            if (b.energyMj == null && offered[i]) allMj = false
        }
        energyMetric = if (allMj) "energy_mj" else "macs"
        sources = sourceAll
        val order = ArrayList<Int>() // stable insertion sort by OperatingPoint key
        for (i in 0 until count) {
            var at = order.size
            while (at > 0 && keyLess(points[i], points[order[at - 1]])) at--
            order.add(at, i)
        }
        val keyRank = IntArray(count)
        for (r in 0 until count) keyRank[order[r]] = r
        val clsAll = IntArray(count)
        val top1All = DoubleArray(count)
        val energyAll = DoubleArray(count)
        for (i in 0 until count) {
            val op = points[i]
            clsAll[i] = if (contains(policy.acceleratorUnits, op.computeUnit)) ACCELERATOR else CPU
            val t = op.top1
            top1All[i] = if (t != null && finite(t)) t else 0.0
            val mj = mjAll[i]
            energyAll[i] = if (allMj && mj != null) mj else Math.max(op.macs, 1L).toDouble()
        }
        // Pareto filter within each class.
        val keep = ArrayList<Int>()
        for (k in 0..1) {
            for (p in 0 until count) {
                if (clsAll[p] != k || !offered[p]) continue
                var dominated = false
                for (q in 0 until count) {
                    if (q == p || clsAll[q] != clsAll[p] || !offered[q]) continue
                    if (top1All[q] >= top1All[p] && baseAll[q] <= baseAll[p] &&
                        (!allMj || energyAll[q] <= energyAll[p]) &&
                        (top1All[q] > top1All[p] || baseAll[q] < baseAll[p] ||
                            (allMj && energyAll[q] < energyAll[p]))) {
                        dominated = true
                        break
                    }
                }
                if (!dominated) keep.add(p)
            }
        }
        candidates = keep
        n = keep.size
        cls = IntArray(n)
        base = DoubleArray(n)
        top1 = DoubleArray(n)
        energy = DoubleArray(n)
        rank = IntArray(n)
        for (c in 0 until n) {
            val i = keep[c]
            cls[c] = clsAll[i]
            base[c] = baseAll[i]
            top1[c] = top1All[i]
            energy[c] = energyAll[i]
            rank[c] = keyRank[i]
        }
    }

    private class Base(val ms: Double, val source: String, val energyMj: Double?)

    /** Step 1: measured latency, else the device's latency model, else MACs at fallback_gmacs_per_s. */
    private fun baseLatency(op: OperatingPoint): Base {
        val p = policy
        var best: LatencyEntry? = null
        val entries = op.latency[device]
        if (entries != null) {
            for (e in entries) {
                if ((p.runtime != null && e.runtime != p.runtime) || (p.threads != null && e.threads != p.threads) ||
                    !finite(e.p50Ms) || e.p50Ms <= 0) continue
                val b = best
                if (b == null || e.p50Ms < b.p50Ms || (e.p50Ms == b.p50Ms && (e.threads < b.threads ||
                        (e.threads == b.threads && codePointLess(e.runtime, b.runtime))))) best = e
            }
        }
        val chosen = best
        if (chosen != null) {
            val mj = chosen.energyMj
            return Base(chosen.p50Ms, "measured", if (mj != null && finite(mj) && mj >= 0) mj else null)
        }
        var bestMs = 0.0
        var bestThreads = 0
        var bestRuntime = ""
        var found = false
        val models = lut.latencyModels[device]
        if (models != null) {
            for (m in models) {
                if (m.precision != op.precision || m.computeUnit != op.computeUnit ||
                    (p.runtime != null && m.runtime != p.runtime) ||
                    (p.threads != null && m.threads != p.threads)) continue
                val ms = m.interceptMs + m.msPerGmac * (op.macs / 1e9)
                if (finite(ms) && ms > 0 && (!found || ms < bestMs || (ms == bestMs && (m.threads < bestThreads ||
                        (m.threads == bestThreads && codePointLess(m.runtime, bestRuntime)))))) {
                    bestMs = ms
                    bestThreads = m.threads
                    bestRuntime = m.runtime
                    found = true
                }
            }
        }
        if (found) return Base(bestMs, "model", null)
        return Base(Math.max(op.macs, 1L) / (p.fallbackGmacsPerS * 1e6), "macs", null)
    }

    /** Forget the current point, the feedback and the hysteresis counters. */
    fun reset() {
        slow[CPU] = 1.0
        slow[ACCELERATOR] = 1.0
        current = -1
        calm = 0
        wanted = -1
        misses = 0
        lastMs = null
        requiredFrames = policy.hysteresisFrames
        window = 0
        switches = 0
    }

    // ------------------------------------------------------------------ step 2: sensors

    private class Clean(val level: Int, val battery: Double, val charging: Boolean, val powerSave: Boolean,
                        val load: Double, val bad: List<String>)

    private fun sanitize(s: DeviceState): Clean {
        val p = policy
        val bad = ArrayList<String>()
        val scaleName = s.thermalScale
        val scale = if (scaleName is String) THERMAL_SCALES[scaleName] else null
        val t = number(s.thermal)
        val level: Int
        if (scale == null) {
            bad.add("bad_sensor:thermal_scale")
            level = p.unknownThermal
        } else if (t != null && finite(t) && t >= 0 && t == Math.floor(t) && t < scale.size) {
            level = scale[t.toInt()]
        } else {
            bad.add("bad_sensor:thermal")
            level = if (t != null && t > scale.size - 1) 3 else p.unknownThermal
        }
        val rawBattery = number(s.battery)
        val battery: Double
        if (rawBattery != null && finite(rawBattery) && 0 <= rawBattery && rawBattery <= 1) {
            battery = rawBattery
        } else {
            bad.add("bad_sensor:battery")
            battery = p.batteryLow
        }
        val rawCharging = s.charging
        val charging: Boolean
        if (rawCharging is Boolean) {
            charging = rawCharging
        } else {
            bad.add("bad_sensor:charging")
            charging = false
        }
        val rawPowerSave = s.powerSave
        val powerSave: Boolean
        if (rawPowerSave is Boolean) {
            powerSave = rawPowerSave
        } else {
            bad.add("bad_sensor:power_save")
            powerSave = true
        }
        val rawLoad = number(s.cpuLoad)
        val load: Double
        if (rawLoad != null && finite(rawLoad) && 0 <= rawLoad && rawLoad <= 1) {
            load = rawLoad
        } else {
            bad.add("bad_sensor:cpu_load")
            load = 1.0
        }
        return Clean(level, battery, charging, powerSave, load, bad)
    }

    // ------------------------------------------------------------------ step 4: picking

    /** pick(candidates with predicted ≤ limit, predicted < below and top1 ≥ min_top1), or -1. */
    private fun pick(pred: DoubleArray, slack: Double, limit: Double, below: Double): Int {
        val minTop1 = policy.minTop1
        var best = -1
        if (slack <= 0) {
            for (c in 0 until n) {
                if (!(pred[c] <= limit && pred[c] < below && top1[c] >= minTop1)) continue
                if (best < 0 || before(-top1[c], pred[c], energy[c], rank[c], -top1[best], pred[best], energy[best],
                        rank[best])) best = c
            }
            return best
        }
        var bestTop1 = 0.0
        var found = false
        for (c in 0 until n) {
            if (pred[c] <= limit && pred[c] < below && top1[c] >= minTop1 && (!found || top1[c] > bestTop1)) {
                bestTop1 = top1[c]
                found = true
            }
        }
        if (!found) return -1
        val floorTop1 = bestTop1 - slack
        for (c in 0 until n) {
            if (!(pred[c] <= limit && pred[c] < below && top1[c] >= minTop1 && top1[c] >= floorTop1)) continue
            if (best < 0 || before(energy[c], -top1[c], pred[c], rank[c], energy[best], -top1[best], pred[best],
                    rank[best])) best = c
        }
        return best
    }

    /** pick({a, b}) (both fit). */
    private fun prefer(a: Int, b: Int, pred: DoubleArray, slack: Double): Int {
        if (slack <= 0 || pyMin(top1[a], top1[b]) < pyMax(top1[a], top1[b]) - slack) {
            return if (before(-top1[a], pred[a], energy[a], rank[a], -top1[b], pred[b], energy[b], rank[b])) a else b
        }
        return if (before(energy[a], -top1[a], pred[a], rank[a], energy[b], -top1[b], pred[b], rank[b])) a else b
    }

    /** Lowest predicted; ties: highest top1, lowest energy, lowest key rank. */
    private fun fastest(pred: DoubleArray): Int {
        var best = -1
        for (c in 0 until n) {
            if (best < 0 || before(pred[c], -top1[c], energy[c], rank[c], pred[best], -top1[best], energy[best],
                    rank[best])) best = c
        }
        return best
    }

    // ------------------------------------------------------------------ steps 3, 5, 7: choosing

    /** The operating point for the next frame. Never throws on sensor values. */
    fun choose(state: DeviceState): Decision {
        val p = policy
        val s = sanitize(state)
        val level = s.level
        // Step 3: effective budget, energy slack, model factors and predictions.
        var budget = p.latencyBudgetMs * p.thermalBudget[level]
        var batteryCode: String? = null
        var slack = 0.0
        if (!s.charging && s.battery <= p.batteryCritical) {
            budget = budget * p.batteryCriticalBudget
            slack = p.energySlackCritical
            batteryCode = "battery_critical"
        } else if (!s.charging && s.battery <= p.batteryLow) {
            budget = budget * p.batteryLowBudget
            slack = p.energySlackLow
            batteryCode = "battery_low"
        }
        if (s.powerSave) {
            budget = budget * p.powerSaveBudget
            slack = pyMax(slack, p.energySlackPowerSave)
        }
        val modelFactor = doubleArrayOf(p.thermalCpuFactor[level] / (1.0 - s.load * p.cpuLoadK), 1.0)
        val fc = modelFactor[CPU] * slow[CPU]
        val fa = slow[ACCELERATOR]
        val pred = DoubleArray(n)
        for (c in 0 until n) pred[c] = base[c] * (if (cls[c] == CPU) fc else fa)
        val minTop1 = p.minTop1
        val cur = current

        // Step 5: hysteresis.
        var chosen: Int
        var action: String
        if (cur < 0 || !(pred[cur] <= budget && top1[cur] >= minTop1)) {
            action = if (cur < 0) "initial" else "step_down_no_fit"
            chosen = pick(pred, slack, budget, INF)
            if (chosen < 0) {
                chosen = fastest(pred)
                action = "none_fit_fallback_fastest"
                if (cur >= 0 && !(pred[chosen] < pred[cur] * (1.0 - p.hysteresisMargin))) {
                    chosen = cur
                    action = "none_fit_hold"
                }
            }
            calm = 0
        } else if (misses >= p.missFrames) {
            chosen = pick(pred, slack, budget, pred[cur] * (1.0 - p.hysteresisMargin))
            action = "deadline_miss_step_down"
            if (chosen < 0) {
                chosen = cur
                action = "deadline_miss_hold"
            }
            calm = 0
            misses = 0
        } else {
            val marginLimit = budget * (1.0 - p.hysteresisMargin)
            val up = pick(pred, slack, marginLimit, INF)
            chosen = cur
            action = "hold"
            if (up >= 0 && up != cur && prefer(up, cur, pred, slack) == up) {
                val frameMs = lastMs ?: pred[cur]
                calm = if (frameMs > marginLimit) 0 else if (up == wanted) calm + 1 else 1
                wanted = up
                if (calm >= requiredFrames) {
                    chosen = up
                    action = "step_up"
                } else {
                    action = "hold_hysteresis"
                }
            } else {
                calm = 0
            }
        }
        if (chosen != cur) {
            if (cur >= 0) switches += 1
            calm = 0
            misses = 0
        }
        current = chosen
        lastMs = null
        if (window > 0) {
            if (action == "step_down_no_fit" || action == "none_fit_fallback_fastest" ||
                action == "deadline_miss_step_down" || action == "step_up") {
                requiredFrames = Math.min(requiredFrames * 2, p.backoffMaxFrames)
                window = 0
            } else {
                window -= 1
                if (window == 0) requiredFrames = Math.max(requiredFrames / 2, p.hysteresisFrames)
            }
        }
        if (action == "step_up") window = p.probeWindowFrames

        // Step 7: reason codes.
        val k = cls[chosen]
        val reason = ArrayList<String>()
        reason.add(action)
        if (pred[chosen] <= budget && top1[chosen] >= minTop1) {
            reason.add("fits_budget")
        } else {
            if (pred[chosen] > budget) reason.add("over_budget")
            if (top1[chosen] < minTop1) reason.add("below_min_top1")
        }
        if (p.thermalBudget[level] < 1) reason.add("thermal_tightened")
        if (p.thermalCpuFactor[level] > 1) reason.add("thermal_cpu_slowdown")
        if (s.load * p.cpuLoadK > 0) reason.add("cpu_load_slowdown")
        if (batteryCode != null) reason.add(batteryCode)
        if (s.charging) reason.add("charging")
        if (s.powerSave) reason.add("power_save")
        if (slack > 0) reason.add("energy_preferred")
        if (pyMax(slow[CPU], slow[ACCELERATOR]) >= p.throttleReport) reason.add("throttle_detected")
        if (k == ACCELERATOR) reason.add("accelerator")
        val index = candidates[chosen]
        val source = sources[index]
        if (source == "model") reason.add("estimated_latency")
        else if (source == "macs") reason.add("estimated_latency_macs")
        reason.addAll(s.bad)
        return Decision(index, lut.operatingPoints[index], pred[chosen], base[chosen] * modelFactor[k], budget,
            CLASS_NAMES[k], source, reason)
    }

    // ------------------------------------------------------------------ step 6: feedback

    /** Feed back the measured latency of a decision; false if the measurement was ignored (not a finite number > 0). */
    fun observe(decision: Decision, measuredMs: Any?): Boolean {
        val measured = number(measuredMs)
        if (measured == null || !finite(measured) || measured <= 0) return false
        val p = policy
        val k = if (decision.unitClass == CLASS_NAMES[ACCELERATOR]) ACCELERATOR else CPU
        val missed = measured > decision.budgetMs
        val ratio = pyMin(pyMax(measured / decision.modelMs, p.slowdownMin), p.slowdownMax)
        slow[k] = (1.0 - p.emaAlpha) * slow[k] + p.emaAlpha * ratio
        slow[1 - k] = (1.0 - p.slowdownRelax) * slow[1 - k] + p.slowdownRelax * 1.0
        if (current >= 0 && candidates[current] == decision.index) {
            lastMs = measured
            misses = if (!missed) {
                0
            } else if (decision.modelMs > decision.budgetMs * (1.0 - p.hysteresisMargin)) {
                Math.max(misses + 1, p.missFrames) // the sensors explain the miss: step down at once
            } else {
                misses + 1 // a point predicted to fit with margin: noise until missFrames in a row
            }
        }
        return true
    }

    companion object {
        const val CPU = 0
        const val ACCELERATOR = 1
        @JvmField
        val CLASS_NAMES = listOf("cpu", "accelerator")
        /** Thermal scale → normalised level 0..3 per raw value. */
        @JvmField
        val THERMAL_SCALES: Map<String, List<Int>> = mapOf(
            "normalized" to listOf(0, 1, 2, 3),
            "android" to listOf(0, 1, 2, 3, 3, 3, 3),
            "ios" to listOf(0, 1, 2, 3)
        )
        private val INF = Double.POSITIVE_INFINITY

        /** Read `bundle/lut.json` and the optional `bundle/selector_policy.json` (over `base`, default: defaults). */
        @JvmStatic
        @JvmOverloads
        fun fromBundle(bundle: File, device: String, base: Policy = Policy.DEFAULT): Selector {
            if (!bundle.isDirectory) {
                throw java.io.FileNotFoundException("$bundle: not a bundle directory (expected lut.json inside)")
            }
            val policyFile = File(bundle, Policy.FILE)
            var policy = base
            if (Document.kind(policyFile) != null) policy = Policy.parse(Document.read(policyFile, policyFile.path), base,
                policyFile.path)
            return Selector(Lut.read(File(bundle, "lut.json")), device, policy)
        }

        /** A finite or infinite double for any Number (never a Boolean), else null. */
        internal fun number(x: Any?): Double? = if (x is Number) x.toDouble() else null

        internal fun finite(x: Double): Boolean = !x.isNaN() && !x.isInfinite()

        /** Python's max(a, b) / min(a, b): the first argument unless the second is strictly greater / smaller. */
        internal fun pyMax(a: Double, b: Double): Double = if (b > a) b else a

        internal fun pyMin(a: Double, b: Double): Double = if (b < a) b else a

        /** Python's tuple comparison (a0, a1, a2, a3) < (b0, b1, b2, b3) with an integer last element. */
        internal fun before(a0: Double, a1: Double, a2: Double, a3: Int, b0: Double, b1: Double, b2: Double,
                            b3: Int): Boolean {
            if (a0 != b0) return a0 < b0
            if (a1 != b1) return a1 < b1
            if (a2 != b2) return a2 < b2
            return a3 < b3
        }

        /** Strings compared by Unicode code point, as Python does. */
        internal fun codePointLess(a: String, b: String): Boolean {
            var i = 0
            var j = 0
            while (i < a.length && j < b.length) {
                val ca = a.codePointAt(i)
                val cb = b.codePointAt(j)
                if (ca != cb) return ca < cb
                i += Character.charCount(ca)
                j += Character.charCount(cb)
            }
            return i >= a.length && j < b.length
        }

        private fun contains(list: List<String>, s: String): Boolean {
            for (x in list) if (x == s) return true
            return false
        }

        /** OperatingPoint.key() order: (resolution, backend, precision, compute_unit, stage_scales), lexicographic. */
        internal fun keyLess(a: OperatingPoint, b: OperatingPoint): Boolean {
            if (a.resolution != b.resolution) return a.resolution < b.resolution
            if (a.backend != b.backend) return codePointLess(a.backend, b.backend)
            if (a.precision != b.precision) return codePointLess(a.precision, b.precision)
            if (a.computeUnit != b.computeUnit) return codePointLess(a.computeUnit, b.computeUnit)
            val sa = a.stageScales ?: emptyList()
            val sb = b.stageScales ?: emptyList()
            var i = 0
            while (i < sa.size && i < sb.size) {
                if (sa[i] != sb[i]) return sa[i] < sb[i]
                i++
            }
            return sa.size < sb.size
        }
    }
}
