package dev.resflex.core

import dev.resflex.selector.DeviceState
import dev.resflex.selector.Lut
import java.util.ArrayDeque
import org.json.JSONArray
import org.json.JSONObject

/** An engine that runs nothing: scripted load/run failures, logits from a function, a record of what ran. */
class FakeEngine(
    private val numClasses: Int,
    private val failLoad: Map<String, String> = emptyMap(),
    private val failRun: Set<String> = emptySet(),
    private val threads: Int = 4
) : InferenceEngine {
    val ran = ArrayList<String>()
    val inputs = ArrayList<FloatArray>()
    val shapes = ArrayList<List<Long>>()
    var loads = 0
    var closed = false

    override fun load(bundle: ResflexBundle, points: List<BundlePoint>): Map<BundlePoint, String> {
        loads++
        val out = LinkedHashMap<BundlePoint, String>()
        for (p in points) {
            val why = failLoad[key(p)]
            if (why != null) out[p] = why
        }
        return out
    }

    override fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray {
        val k = key(point)
        if (failRun.contains(k)) throw IllegalStateException("fake run failure of $k")
        ran.add(k)
        inputs.add(input)
        val s = ArrayList<Long>()
        for (d in shape) s.add(d)
        shapes.add(s)
        val logits = FloatArray(numClasses)
        // The class "equal" to the resolution modulo num_classes wins, so tests can tell which point ran.
        for (i in 0 until numClasses) logits[i] = if (i == point.point.resolution % numClasses) 2f else 0f
        return logits
    }

    override fun threads(point: BundlePoint): Int = threads

    override fun close() {
        closed = true
    }

    companion object {
        /** "entry@compute_unit". */
        fun key(p: BundlePoint): String = "${p.entry.name}@${p.point.computeUnit}"
    }
}

/** A clock that returns queued values (NaN when the queue is empty). */
class ScriptedClock : Clock {
    private val queue = ArrayDeque<Double>()
    fun push(vararg values: Double) {
        for (v in values) queue.add(v)
    }

    fun remaining(): Int = queue.size

    override fun nowMs(): Double = if (queue.isEmpty()) Double.NaN else queue.removeFirst()
}

/** Signals whose next snapshot the test sets. */
class ScriptedSignals(var state: DeviceState = DeviceState()) : Signals {
    override fun snapshot(): DeviceState = state
}

/** Documents for bundles built by tests. */
object Synth {
    /**
     * A manifest.json for the points of `lut`: one artifact per distinct artifact file (backend and precision of
     * its points; NHWC for tflite, NCHW otherwise), its entries, and an InputSpec per resolution with a small
     * `crop` (tests preprocess every frame; the nominal resolution stays the LUT's).
     */
    fun manifestFor(lut: Lut, numClasses: Int, checkpoint: String = "c".repeat(64), crop: Int = 2): JSONObject {
        val artifacts = LinkedHashMap<String, JSONObject>()
        val resolutions = ArrayList<Int>()
        for (p in lut.operatingPoints) {
            if (!resolutions.contains(p.resolution)) resolutions.add(p.resolution)
            var a = artifacts[p.artifact]
            val layout = if (p.backend == "tflite") "NHWC" else "NCHW"
            if (a == null) {
                a = JSONObject()
                a.put("backend", p.backend)
                a.put("precision", p.precision)
                a.put("file", p.artifact)
                a.put("sha256", "0".repeat(64))
                a.put("bytes", 1)
                a.put("layout", layout)
                a.put("entries", JSONArray())
                a.put("runs_on_host", true)
                artifacts[p.artifact] = a
            }
            val entries = a.getJSONArray("entries")
            var seen = false
            for (i in 0 until entries.length()) if (entries.getJSONObject(i).getString("name") == p.entry) seen = true
            if (!seen) {
                val e = JSONObject()
                e.put("resolution", p.resolution)
                e.put("name", p.entry)
                e.put("input_name", "x")
                e.put("output_name", "logits")
                e.put("input_shape", if (layout == "NHWC") JSONArray(listOf(1, crop, crop, 3))
                else JSONArray(listOf(1, 3, crop, crop)))
                val scales = p.stageScales
                if (scales != null) e.put("stage_scales", JSONArray(scales))
                entries.put(e)
                // An ONNX entry names a file beside the artifact's; a manifest lists each with its sha256.
                val slash = p.artifact.lastIndexOf('/')
                val file = (if (slash < 0) "" else p.artifact.substring(0, slash + 1)) + p.entry
                if (p.backend == "onnx" && file != p.artifact) {
                    if (!a.has("extra_files")) a.put("extra_files", JSONArray())
                    a.getJSONArray("extra_files").put(JSONObject().put("file", file).put("sha256", "0".repeat(64))
                        .put("bytes", 1))
                }
            }
        }
        val inputs = JSONArray()
        for (r in resolutions) inputs.put(inputSpec(r, crop, crop))
        val m = JSONObject()
        m.put("kind", "resflex.manifest")
        m.put("schema_version", "1.0")
        m.put("model", model(numClasses, checkpoint))
        m.put("resolutions", JSONArray(resolutions))
        m.put("inputs", inputs)
        val list = JSONArray()
        for (a in artifacts.values) list.put(a)
        m.put("artifacts", list)
        return m
    }

    fun model(numClasses: Int, checkpoint: String = "c".repeat(64)): JSONObject {
        val names = JSONArray()
        for (i in 0 until numClasses) names.put("class_$i")
        val model = JSONObject()
        model.put("arch", "resnet18")
        model.put("method", "rs")
        model.put("width", 1.0)
        model.put("num_classes", numClasses)
        model.put("train_resolutions", JSONArray(listOf(224, 192)))
        model.put("class_names", names)
        model.put("checkpoint_sha256", checkpoint)
        return model
    }

    fun inputSpec(resolution: Int, resize: Int, crop: Int): JSONObject {
        val s = JSONObject()
        s.put("resolution", resolution)
        s.put("resize_shorter_to", resize)
        s.put("crop", crop)
        s.put("mean", JSONArray(listOf(0.485, 0.456, 0.406)))
        s.put("std", JSONArray(listOf(0.229, 0.224, 0.225)))
        s.put("interpolation", "bilinear_antialias")
        s.put("value_range", "RGB in [0, 1] before mean/std")
        return s
    }

    /** A bundle in memory for `lut` (no files). */
    fun bundle(lut: Lut, numClasses: Int = 3, crop: Int = 2): ResflexBundle =
        ResflexBundle.of(Manifest.fromJson(manifestFor(lut, numClasses, crop = crop), "synthetic manifest"), lut)

    /** A small grey-ish upright frame. */
    fun frame(width: Int = 4, height: Int = 3): RgbImage {
        val rgb = ByteArray(width * height * 3)
        for (i in rgb.indices) rgb[i] = (i * 37 % 256).toByte()
        return RgbImage(width, height, rgb)
    }

    /** A LUT document: points as (resolution, backend, precision, unit, artifact, entry, macs, top1, p50 or null). */
    fun lut(device: String, vararg points: Array<Any?>): Lut {
        val ops = JSONArray()
        for (p in points) {
            val o = JSONObject()
            o.put("resolution", p[0])
            o.put("backend", p[1])
            o.put("precision", p[2])
            o.put("compute_unit", p[3])
            o.put("artifact", p[4])
            o.put("entry", p[5])
            o.put("macs", p[6])
            o.put("top1", p[7])
            val lat = JSONObject()
            if (p[8] != null) {
                val e = JSONObject()
                e.put("runtime", p[1])
                e.put("threads", 4)
                e.put("p50_ms", p[8])
                lat.put(device, JSONArray().put(e))
            }
            o.put("latency", lat)
            ops.put(o)
        }
        val doc = JSONObject()
        doc.put("kind", "resflex.lut")
        doc.put("schema_version", "1.0")
        doc.put("operating_points", ops)
        doc.put("devices", JSONObject().put(device, JSONObject()))
        return Lut.fromJson(doc, "test lut")
    }
}
