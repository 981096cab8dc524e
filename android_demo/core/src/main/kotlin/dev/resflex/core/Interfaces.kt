package dev.resflex.core

import dev.resflex.selector.DeviceState

/**
 * Runs the entries of a bundle's artifacts (ExecuTorch methods, TFLite signatures). Implementations live in the
 * app (`ExecuTorchEngine`, `LiteRtEngine`); tests use fakes. Calls come from one thread at a time.
 */
interface InferenceEngine {
    /**
     * Load every point once, before the first frame (switching resolution must not load anything). Returns the
     * error text of each point that could not be loaded (e.g. "GPU delegate not supported"); those are not run.
     */
    fun load(bundle: ResflexBundle, points: List<BundlePoint>): Map<BundlePoint, String>

    /** Run one loaded point on an input of `shape` (the entry's input_shape); returns the logits. */
    fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray

    /** Threads this point runs with (device_profile.json `latency.threads`, ≥ 1). */
    fun threads(point: BundlePoint): Int

    /** Release every loaded model. */
    fun close()
}

/** The phone's state now, for the selector (Android: `AndroidSignals`; tests: scripted). */
interface Signals {
    fun snapshot(): DeviceState
}

/** Milliseconds from an arbitrary origin (monotonic); injectable so tests replay exact latencies. */
interface Clock {
    fun nowMs(): Double

    companion object {
        @JvmField
        val SYSTEM: Clock = object : Clock {
            override fun nowMs(): Double = System.nanoTime() / 1e6
        }
    }
}

/** Energy over a benchmark run (Android: battery current × voltage sampled during the run). */
interface EnergyMeter {
    /** True when [end] is an estimate (battery current × voltage), false for a measured power rail. */
    val estimated: Boolean

    /** Called right before the timed runs of one operating point. */
    fun begin()

    /** Millijoules used since [begin] (all runs together), or null when the phone cannot tell (e.g. charging). */
    fun end(): Double?
}

/** The LUT's runtime name of each backend (resflex.mobile.bundle.schema.BACKEND_RUNTIMES). */
object Runtimes {
    @JvmStatic
    fun of(backend: String): String = when (backend) {
        "onnx" -> "onnxruntime"
        else -> backend
    }
}

/**
 * One engine per backend behind one [InferenceEngine]: points of a backend without an engine fail to load with
 * a message naming the backend.
 */
class Engines(private val byBackend: Map<String, InferenceEngine>) : InferenceEngine {
    override fun load(bundle: ResflexBundle, points: List<BundlePoint>): Map<BundlePoint, String> {
        val failed = LinkedHashMap<BundlePoint, String>()
        for ((backend, engine) in byBackend) {
            val mine = ArrayList<BundlePoint>()
            for (p in points) if (p.artifact.backend == backend) mine.add(p)
            if (mine.isEmpty()) continue
            val errors = try {
                engine.load(bundle, mine)
            } catch (e: Exception) {
                val all = LinkedHashMap<BundlePoint, String>()
                for (p in mine) all[p] = "$backend engine failed to load: ${e.message ?: e.toString()}"
                all
            }
            failed.putAll(errors)
        }
        for (p in points) {
            if (!byBackend.containsKey(p.artifact.backend)) {
                failed[p] = "no ${p.artifact.backend} engine in this app"
            }
        }
        return failed
    }

    private fun engine(point: BundlePoint): InferenceEngine = byBackend[point.artifact.backend]
        ?: throw IllegalStateException("no ${point.artifact.backend} engine in this app")

    override fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray =
        engine(point).run(point, input, shape)

    override fun threads(point: BundlePoint): Int = engine(point).threads(point)

    override fun close() {
        for (e in byBackend.values) e.close()
    }
}
