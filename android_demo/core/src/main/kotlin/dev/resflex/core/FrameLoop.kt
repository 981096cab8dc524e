package dev.resflex.core

import dev.resflex.selector.Decision
import dev.resflex.selector.DeviceState
import dev.resflex.selector.Lut
import dev.resflex.selector.OperatingPoint
import dev.resflex.selector.Policy
import dev.resflex.selector.Selector

/** One class of the top-k: its index in the logits, its name (manifest class_names) and its softmax score. */
data class Label(val index: Int, val name: String, val score: Double)

/** An operating point removed from the candidates on this phone, and why. */
data class Exclusion(val point: OperatingPoint, val reason: String)

/** What one frame did: the choice, why, what it cost against the budget, and the top-k labels. */
data class FrameResult(
    /** The operating point that ran (null when nothing could run). */
    val point: BundlePoint?,
    /** The selector's decision (predicted latency, effective budget, class, latency source). */
    val decision: Decision?,
    val top: List<Label>,
    /** Measured inference time (the clock around `InferenceEngine.run` only), fed back to the selector. */
    val latencyMs: Double?,
    /** The effective budget after thermal / battery / power-save tightening. */
    val budgetMs: Double?,
    /** The selector's reason codes (+ `pinned_resolution` when the user pinned one). */
    val reason: List<String>,
    val pinnedResolution: Int?,
    val state: DeviceState,
    /** Why this frame produced no labels (the point that failed is excluded from the next frame on). */
    val error: String?
) {
    val overBudget: Boolean get() = latencyMs != null && budgetMs != null && latencyMs > budgetMs
}

/**
 * Per camera frame: signals snapshot → `Selector.choose` → preprocess at the chosen point's InputSpec and layout →
 * `InferenceEngine.run` timed by [clock] → `Selector.observe(measured ms)` → [FrameResult].
 *
 * [start] loads every point of the bundle once. A point that fails to load, or later to run, is removed from the
 * selector's candidates (the selector is rebuilt from the LUT without it; the reason is logged and listed in
 * [exclusions]); the other points keep working. [pin] restricts the choice to one resolution (the selector still
 * picks backend, precision and unit among that resolution's points). Not thread-safe except [pin], which the UI
 * thread may call while frames are processed on the camera thread.
 */
class FrameLoop @JvmOverloads constructor(
    val bundle: ResflexBundle,
    /** The device id under which this phone's latencies are stored in the LUT (`device_profile.json` device_id). */
    val device: String,
    private val engine: InferenceEngine,
    private val signals: Signals,
    private val clock: Clock = Clock.SYSTEM,
    val policy: Policy = bundle.policy ?: Policy.DEFAULT,
    private val topK: Int = 3,
    private val log: (String) -> Unit = {}
) {
    private val excluded = ArrayList<Exclusion>()
    @Volatile
    private var runnable: List<BundlePoint> = emptyList()
    private var selector: Selector? = null
    private val pinnedSelectors = HashMap<Int, Selector?>()
    private var started = false

    @Volatile
    var pinnedResolution: Int? = null
        private set

    /** Load every point of the bundle (once); returns the points that could not be loaded, with the reason. */
    fun start(): List<Exclusion> {
        if (started) return exclusions()
        started = true
        val failed = try {
            engine.load(bundle, bundle.points)
        } catch (e: Exception) {
            val all = LinkedHashMap<BundlePoint, String>()
            for (p in bundle.points) all[p] = "load failed: ${e.message ?: e.toString()}"
            all
        }
        val ok = ArrayList<BundlePoint>()
        for (p in bundle.points) {
            val why = failed[p]
            if (why == null) ok.add(p) else addExclusion(p, "load failed: $why")
        }
        rebuild(ok)
        return exclusions()
    }

    /** Points removed on this phone, with the reason. */
    fun exclusions(): List<Exclusion> = synchronized(excluded) { ArrayList(excluded) }

    /** The points the selector chooses among now. */
    fun candidates(): List<BundlePoint> = runnable

    /** Resolutions that can be pinned (those with a runnable point), ascending. */
    fun resolutions(): List<Int> {
        val out = ArrayList<Int>()
        for (p in runnable) if (!out.contains(p.point.resolution)) out.add(p.point.resolution)
        out.sort()
        return out
    }

    /** Run only points of `resolution` from the next frame on; null lets the selector choose freely again. */
    fun pin(resolution: Int?) {
        if (resolution != null && !resolutions().contains(resolution)) {
            throw IllegalArgumentException("no runnable operating point at $resolution px; runnable: ${resolutions()}")
        }
        pinnedResolution = resolution
    }

    private fun addExclusion(p: BundlePoint, reason: String) {
        synchronized(excluded) { excluded.add(Exclusion(p.point, reason)) }
        log("resflex: removed ${p.label()} (${p.artifact.file} ${p.entry.name}): $reason")
    }

    private fun rebuild(points: List<BundlePoint>) {
        runnable = points
        pinnedSelectors.clear()
        selector = if (points.isEmpty()) null else Selector(lutOf(points), device, policy)
    }

    /** The bundle's LUT reduced to `points` (latency models kept), in the LUT's order. */
    private fun lutOf(points: List<BundlePoint>): Lut {
        val ops = ArrayList<OperatingPoint>()
        for (p in points) ops.add(p.point)
        return Lut(ops, bundle.lut.latencyModels)
    }

    private fun selectorFor(pin: Int?): Selector? {
        if (pin == null) return selector
        if (!pinnedSelectors.containsKey(pin)) {
            val subset = ArrayList<BundlePoint>()
            for (p in runnable) if (p.point.resolution == pin) subset.add(p)
            pinnedSelectors[pin] = if (subset.isEmpty()) null else Selector(lutOf(subset), device, policy)
        }
        return pinnedSelectors[pin]
    }

    /** One frame (already upright RGB; see [Preprocess.fromYuv420] and [Preprocess.fromArgb]). */
    fun process(image: RgbImage): FrameResult {
        if (!started) start()
        val state = signals.snapshot()
        var pin = pinnedResolution
        if (pin != null && !resolutions().contains(pin)) {
            log("resflex: pinned $pin px has no runnable point left; choosing freely")
            pinnedResolution = null
            pin = null
        }
        val sel = selectorFor(pin) ?: return FrameResult(null, null, emptyList(), null, null, emptyList(), pin, state,
            "no operating point can run on this phone: " + describe(exclusions()))
        val d = sel.choose(state)
        val reason = ArrayList(d.reason)
        if (pin != null) reason.add("pinned_resolution")
        val bp = pointOf(d.point)
        val input = Preprocess.toInput(image, bp.input, bp.layout)
        val t0 = clock.nowMs()
        val logits = try {
            engine.run(bp, input, bp.shape())
        } catch (e: Exception) {
            return fail(bp, d, reason, pin, state, "run failed: ${e.message ?: e.toString()}")
        }
        val ms = clock.nowMs() - t0
        val classes = bundle.manifest.model.numClasses
        if (logits.size != classes) {
            return fail(bp, d, reason, pin, state, "${bp.entry.name} returned ${logits.size} values, expected " +
                "num_classes = $classes")
        }
        sel.observe(d, ms)
        return FrameResult(bp, d, topK(logits, topK, bundle.classNames), ms, d.budgetMs, reason, pin, state, null)
    }

    private fun fail(bp: BundlePoint, d: Decision, reason: List<String>, pin: Int?, state: DeviceState,
                     why: String): FrameResult {
        addExclusion(bp, why)
        val left = ArrayList<BundlePoint>()
        for (p in runnable) if (!BundlePoint.sameKey(p.point, bp.point)) left.add(p)
        rebuild(left)
        return FrameResult(bp, d, emptyList(), null, d.budgetMs, reason, pin, state, "${bp.label()}: $why")
    }

    private fun pointOf(p: OperatingPoint): BundlePoint {
        for (b in runnable) if (BundlePoint.sameKey(b.point, p)) return b
        throw IllegalStateException("selector chose ${BundlePoint.describe(p)}, which is not runnable")
    }

    companion object {
        private fun describe(list: List<Exclusion>): String {
            if (list.isEmpty()) return "the bundle has no point for this app's backends"
            val parts = ArrayList<String>()
            for (e in list) parts.add(BundlePoint.describe(e.point) + ": " + e.reason)
            return parts.joinToString("; ")
        }

        /** Softmax over the logits, then the k best (ties: lower index first); NaN logits score 0. */
        @JvmStatic
        fun topK(logits: FloatArray, k: Int, names: List<String>): List<Label> {
            var max = Double.NEGATIVE_INFINITY
            for (v in logits) if (!v.isNaN() && v > max) max = v.toDouble()
            val p = DoubleArray(logits.size)
            var sum = 0.0
            for (i in logits.indices) {
                val v = logits[i]
                p[i] = if (v.isNaN() || max.isInfinite()) 0.0 else Math.exp(v - max)
                sum += p[i]
            }
            val out = ArrayList<Label>()
            val taken = BooleanArray(logits.size)
            for (n in 0 until Math.min(k, logits.size)) {
                var best = -1
                for (i in logits.indices) if (!taken[i] && (best < 0 || p[i] > p[best])) best = i
                taken[best] = true
                val name = if (best < names.size) names[best] else "class $best"
                out.add(Label(best, name, if (sum > 0) p[best] / sum else 0.0))
            }
            return out
        }
    }
}
