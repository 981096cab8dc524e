package dev.resflex.core

import dev.resflex.selector.OperatingPoint
import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import org.json.JSONArray
import org.json.JSONObject

/** One operating point measured on this phone (device_profile.json `measurements[i]`). */
data class Measurement(
    val point: OperatingPoint,
    val runtime: String,
    val threads: Int,
    val runs: Int,
    val p50Ms: Double,
    val p90Ms: Double,
    val p99Ms: Double,
    /** Achieved GFLOP/s = 2 · MACs / p50 (null without MACs). */
    val gflops: Double?,
    /** Per inference, where the phone could measure or estimate it. */
    val energyMj: Double?,
    val energyEstimated: Boolean
)

/** An operating point this phone could not run (device_profile.json `failures[i]`). */
data class MeasurementFailure(val point: OperatingPoint, val error: String)

/**
 * What the benchmark measured on one phone for one bundle: `device_profile.json`, imported on the host with
 * `resflex profile BUNDLE --import device_profile.json` (format: tests/golden/README.md; schema
 * mobile/bundle/jsonschema/device_profile.schema.json).
 */
data class DeviceProfile(
    /** [a-z0-9][a-z0-9._-]{0,127}: the LUT's device key. */
    val deviceId: String,
    /** platform, model, soc, os, runtime versions, app (string → string). */
    val facts: Map<String, String>,
    val checkpointSha256: String,
    val measurements: List<Measurement>,
    val failures: List<MeasurementFailure>
) {
    init {
        require(DEVICE_ID.matches(deviceId)) {
            "device_id '$deviceId' is not a device id ([a-z0-9._-], at most 128 characters, starting with a " +
                "letter or digit)"
        }
    }

    /** The JSON document (non-finite numbers are never written: they become null or a failure earlier). */
    fun toJson(): JSONObject {
        val doc = JSONObject()
        doc.put("kind", KIND)
        doc.put("schema_version", SCHEMA_VERSION)
        doc.put("device_id", deviceId)
        val f = JSONObject()
        for ((k, v) in facts) f.put(k, v)
        doc.put("facts", f)
        doc.put("checkpoint_sha256", checkpointSha256)
        val ms = JSONArray()
        for (m in measurements) {
            val o = pointJson(m.point)
            val lat = JSONObject()
            lat.put("runtime", m.runtime)
            lat.put("threads", m.threads)
            lat.put("runs", m.runs)
            lat.put("p50_ms", m.p50Ms)
            lat.put("p90_ms", m.p90Ms)
            lat.put("p99_ms", m.p99Ms)
            lat.put("peak_memory_mb", JSONObject.NULL)
            lat.put("gflops", finiteOrNull(m.gflops))
            lat.put("energy_mj", finiteOrNull(m.energyMj))
            o.put("latency", lat)
            o.put("energy_estimated", m.energyEstimated && m.energyMj != null)
            ms.put(o)
        }
        doc.put("measurements", ms)
        val fs = JSONArray()
        for (x in failures) {
            val o = pointJson(x.point)
            o.put("error", x.error)
            fs.put(o)
        }
        doc.put("failures", fs)
        return doc
    }

    /** Write the document atomically: a temporary file beside `file`, then a rename over it. */
    fun write(file: File) {
        val text = toJson().toString(1) + "\n"
        val dir = file.absoluteFile.parentFile ?: throw IOException("$file: no parent folder")
        if (!dir.isDirectory && !dir.mkdirs()) throw IOException("$dir: cannot create the folder")
        val tmp = File(dir, ".${file.name}.${System.nanoTime()}.tmp")
        try {
            FileOutputStream(tmp).use { out ->
                out.write(text.toByteArray(Charsets.UTF_8))
                out.fd.sync()
            }
            // rename(2) replaces `file` atomically on Android and Linux; where renaming over a file is refused
            // (Windows), the old file goes first.
            if (!tmp.renameTo(file) && !(file.delete() && tmp.renameTo(file))) {
                throw IOException("cannot rename $tmp to $file")
            }
        } finally {
            if (tmp.exists()) tmp.delete()
        }
    }

    companion object {
        const val KIND = "resflex.device_profile"
        const val SCHEMA_VERSION = "1.0"
        const val FILE = "device_profile.json"
        @JvmField
        val DEVICE_ID = Regex("^[a-z0-9][a-z0-9._-]{0,127}$")

        private fun finiteOrNull(x: Double?): Any =
            if (x == null || x.isNaN() || x.isInfinite() || x <= 0) JSONObject.NULL else x

        private fun pointJson(p: OperatingPoint): JSONObject {
            val o = JSONObject()
            o.put("resolution", p.resolution)
            o.put("backend", p.backend)
            o.put("precision", p.precision)
            o.put("compute_unit", p.computeUnit)
            val scales = p.stageScales
            if (scales == null) {
                o.put("stage_scales", JSONObject.NULL)
            } else {
                val a = JSONArray()
                for (s in scales) a.put(s)
                o.put("stage_scales", a)
            }
            o.put("entry", p.entry)
            return o
        }

        /** A device id from free text ("Pixel 8" → "pixel-8"), as the LUT's device key. */
        @JvmStatic
        fun deviceIdOf(text: String): String {
            val sb = StringBuilder()
            for (c in text) {
                val ch = if (c in 'A'..'Z') c + ('a' - 'A') else c
                val ok = (ch in 'a'..'z') || (ch in '0'..'9') || ch == '.' || ch == '_' || ch == '-'
                sb.append(if (ok) ch else '-')
            }
            var id = sb.toString()
            while (id.contains("--")) id = id.replace("--", "-")
            id = id.trim('-', '.', '_')
            if (id.isEmpty()) id = "android-phone"
            return if (id.length > 128) id.substring(0, 128) else id
        }
    }
}

/**
 * Measures every operating point the engines can run: load once, then per point `warmup` untimed runs and `runs`
 * timed runs (the clock around `InferenceEngine.run` only), p50/p90/p99 by linear interpolation between order
 * statistics (numpy's default), optional energy per inference from an [EnergyMeter]. A point that fails to load
 * or run is recorded in `failures` with the error; the others are still measured.
 */
class BenchmarkRunner @JvmOverloads constructor(
    private val bundle: ResflexBundle,
    private val engine: InferenceEngine,
    private val clock: Clock = Clock.SYSTEM,
    private val energy: EnergyMeter? = null,
    val warmup: Int = 5,
    val runs: Int = 50,
    /** Called after each point: (points done, points in all, the point just measured). */
    private val progress: (Int, Int, BundlePoint) -> Unit = { _, _, _ -> }
) {
    init {
        require(warmup >= 0 && runs >= 1) { "warmup must be ≥ 0 and runs ≥ 1, got $warmup and $runs" }
    }

    /**
     * Measure `points` (default: every point of the bundle). Set `loaded` when the engine already loaded them
     * (e.g. by a running [FrameLoop]); otherwise they are loaded here first.
     */
    @JvmOverloads
    fun run(deviceId: String, facts: Map<String, String>, points: List<BundlePoint> = bundle.points,
            loaded: Boolean = false): DeviceProfile {
        val measurements = ArrayList<Measurement>()
        val failures = ArrayList<MeasurementFailure>()
        val failedLoad: Map<BundlePoint, String> = if (loaded) emptyMap() else try {
            engine.load(bundle, points)
        } catch (e: Exception) {
            val all = LinkedHashMap<BundlePoint, String>()
            for (p in points) all[p] = "load failed: ${e.message ?: e.toString()}"
            all
        }
        var done = 0
        for (p in points) {
            val loadError = failedLoad[p]
            if (loadError != null) {
                failures.add(MeasurementFailure(p.point, loadError))
            } else {
                try {
                    measurements.add(measure(p))
                } catch (e: Exception) {
                    failures.add(MeasurementFailure(p.point, e.message ?: e.toString()))
                }
            }
            done++
            progress(done, points.size, p)
        }
        return DeviceProfile(deviceId, facts, bundle.manifest.model.checkpointSha256, measurements, failures)
    }

    /** Warm-up and timed runs of one loaded point. */
    fun measure(p: BundlePoint): Measurement {
        val shape = p.shape()
        val input = syntheticInput(p)
        for (i in 0 until warmup) engine.run(p, input, shape)
        val times = DoubleArray(runs)
        energy?.begin()
        for (i in 0 until runs) {
            val t0 = clock.nowMs()
            engine.run(p, input, shape)
            times[i] = clock.nowMs() - t0
        }
        val mj = energy?.end()
        for (t in times) {
            if (t.isNaN() || t.isInfinite() || t <= 0) {
                throw IllegalStateException("the clock gave a latency of $t ms: not a finite number > 0")
            }
        }
        val p50 = percentile(times, 50.0)
        val macs = p.point.macs
        val perInference = if (mj == null || mj.isNaN() || mj.isInfinite() || mj <= 0) null else mj / runs
        return Measurement(p.point, Runtimes.of(p.artifact.backend), Math.max(engine.threads(p), 1), runs, p50,
            percentile(times, 90.0), percentile(times, 99.0), if (macs > 0) 2.0 * macs / (p50 * 1e6) else null,
            perInference, perInference != null && energy != null && energy.estimated)
    }

    companion object {
        /** q-th percentile, linear interpolation between order statistics (numpy's default): README rule. */
        @JvmStatic
        fun percentile(samples: DoubleArray, q: Double): Double {
            require(samples.isNotEmpty()) { "percentile of no samples" }
            val xs = samples.copyOf()
            java.util.Arrays.sort(xs)
            val rank = (xs.size - 1) * q / 100.0
            val lo = Math.floor(rank).toInt()
            val hi = Math.min(lo + 1, xs.size - 1)
            return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)
        }

        /** A fixed, image-like input (normalised values in about [-2, 2]) of the point's shape. */
        @JvmStatic
        fun syntheticInput(p: BundlePoint): FloatArray {
            var n = 1
            for (d in p.entry.inputShape) n *= d
            val out = FloatArray(n)
            var s = 12345L
            for (i in 0 until n) {
                s = (s * 6364136223846793005L + 1442695040888963407L)
                out[i] = ((s ushr 40).toInt() and 0xffff) / 16384f - 2f
            }
            return out
        }
    }
}
