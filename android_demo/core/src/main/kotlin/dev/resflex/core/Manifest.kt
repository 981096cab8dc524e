package dev.resflex.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/**
 * A bundle that cannot be used: names the file, the field (a JSON path such as `artifacts[1].sha256`, or null
 * when the problem is the file itself) and what is wrong. The app shows [message] on screen.
 */
class BundleError(val file: String, val field: String?, val problem: String) :
    Exception(if (field == null) "$file: $problem" else "$file: $field: $problem")

/** manifest.json `model` (resflex.mobile.bundle.schema.ModelInfo). */
data class ModelInfo(
    val arch: String,
    val method: String,
    val width: Double,
    val numClasses: Int,
    val trainResolutions: List<Int>,
    val classNames: List<String>,
    val checkpointSha256: String
)

/** How a camera frame becomes the input of one resolution (resflex.mobile.bundle.schema.InputSpec). */
data class InputSpec(
    val resolution: Int,
    val resizeShorterTo: Int,
    val crop: Int,
    val mean: List<Double>,
    val std: List<Double>,
    val interpolation: String = "bilinear",
    val valueRange: String = "RGB in [0, 1] before mean/std"
)

/** One resolution inside an artifact: ExecuTorch method, TFLite signature, Core ML function or file. */
data class EntryInfo(
    val resolution: Int,
    val name: String,
    val inputName: String,
    val outputName: String,
    val inputShape: List<Int>
)

/** A further file of an artifact (e.g. ONNX's other resolutions), with its own sha256. */
data class FileRef(val file: String, val sha256: String, val bytes: Long)

/** One exported model file (or .mlpackage folder) and what it serves (resflex.mobile.bundle.schema.ArtifactInfo). */
data class ArtifactInfo(
    val backend: String,
    val precision: String,
    val file: String,
    val sha256: String,
    val bytes: Long,
    /** "NCHW" or "NHWC": the artifact's input layout. */
    val layout: String,
    val entries: List<EntryInfo>,
    val runsOnHost: Boolean,
    val extraFiles: List<FileRef>
) {
    fun entry(name: String): EntryInfo? {
        for (e in entries) if (e.name == name) return e
        return null
    }
}

/** manifest.json, reduced to what an app reads (parity, failures, notes and created_with are not kept). */
data class Manifest(
    val model: ModelInfo,
    val resolutions: List<Int>,
    val inputs: List<InputSpec>,
    val artifacts: List<ArtifactInfo>,
    val schemaVersion: String
) {
    fun input(resolution: Int): InputSpec? {
        for (s in inputs) if (s.resolution == resolution) return s
        return null
    }

    fun artifact(file: String): ArtifactInfo? {
        for (a in artifacts) if (a.file == file) return a
        return null
    }

    companion object {
        const val KIND = "resflex.manifest"
        const val SCHEMA_MAJOR = "1"
        const val FILE = "manifest.json"
        @JvmField
        val BACKENDS = listOf("executorch", "coreml", "tflite", "onnx")
        @JvmField
        val PRECISIONS = listOf("fp32", "fp16", "int8", "dynamic_int8")
        @JvmField
        val LAYOUTS = listOf("NCHW", "NHWC")
        /** InputSpec.interpolation values this reader implements (the README algorithm; "bilinear" is its old name). */
        @JvmField
        val INTERPOLATIONS = listOf("bilinear_antialias", "bilinear")

        /** Parse the text of a manifest.json; `source` names it in errors. */
        @JvmStatic
        fun parse(text: String, source: String = FILE): Manifest {
            val doc = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw BundleError(source, null, "not valid JSON: ${e.message}")
            }
            return fromJson(doc, source)
        }

        @JvmStatic
        fun fromJson(doc: JSONObject, source: String = FILE): Manifest {
            val top = Json(doc, source, "")
            val kind = doc.opt("kind")
            if (kind != KIND) throw BundleError(source, "kind", "is $kind, expected $KIND")
            val version = doc.opt("schema_version")
            if (version !is String || version.split(".")[0] != SCHEMA_MAJOR) {
                throw BundleError(source, "schema_version", "$version is not supported by this reader (major " +
                    "$SCHEMA_MAJOR); update the app to read it")
            }
            val m = top.obj("model")
            val model = ModelInfo(m.string("arch"), m.string("method"), m.double("width"), m.int("num_classes"),
                m.ints("train_resolutions"), m.strings("class_names"), m.string("checkpoint_sha256"))
            val inputs = ArrayList<InputSpec>()
            val rawInputs = top.array("inputs")
            for (i in 0 until rawInputs.length()) {
                val s = top.item(rawInputs, "inputs", i)
                val spec = InputSpec(s.int("resolution"), s.int("resize_shorter_to"), s.int("crop"),
                    s.doubles("mean"), s.doubles("std"), s.optString("interpolation") ?: "bilinear",
                    s.optString("value_range") ?: "RGB in [0, 1] before mean/std")
                if (spec.mean.size != 3) s.fail("mean", "expected 3 numbers (R, G, B), got ${spec.mean}")
                if (spec.std.size != 3) s.fail("std", "expected 3 numbers (R, G, B), got ${spec.std}")
                for (v in spec.std) if (!(v > 0) || v.isInfinite()) s.fail("std", "expected numbers > 0, got ${spec.std}")
                if (!INTERPOLATIONS.contains(spec.interpolation)) {
                    s.fail("interpolation", "${spec.interpolation} is not implemented here; expected one of " +
                        INTERPOLATIONS.joinToString(", "))
                }
                if (spec.crop < 1 || spec.resizeShorterTo < spec.crop) {
                    s.fail("crop", "expected 1 ≤ crop ≤ resize_shorter_to, got crop ${spec.crop}, resize_shorter_to " +
                        "${spec.resizeShorterTo}")
                }
                inputs.add(spec)
            }
            val artifacts = ArrayList<ArtifactInfo>()
            val rawArtifacts = top.array("artifacts")
            for (i in 0 until rawArtifacts.length()) artifacts.add(artifact(top.item(rawArtifacts, "artifacts", i)))
            return Manifest(model, top.ints("resolutions"), inputs, artifacts, version)
        }

        private fun artifact(a: Json): ArtifactInfo {
            val backend = a.oneOf("backend", BACKENDS)
            val precision = a.oneOf("precision", PRECISIONS)
            val layout = a.oneOf("layout", LAYOUTS)
            val file = a.string("file")
            BundlePaths.checkRelative(file, a.source, a.path("file"))
            val entries = ArrayList<EntryInfo>()
            val rawEntries = a.array("entries")
            for (j in 0 until rawEntries.length()) {
                val e = a.item(rawEntries, "entries", j)
                entries.add(EntryInfo(e.int("resolution"), e.string("name"), e.string("input_name"),
                    e.string("output_name"), e.ints("input_shape")))
            }
            val extra = ArrayList<FileRef>()
            val rawExtra = a.optArray("extra_files")
            if (rawExtra != null) {
                for (j in 0 until rawExtra.length()) {
                    val f = a.item(rawExtra, "extra_files", j)
                    val name = f.string("file")
                    BundlePaths.checkRelative(name, f.source, f.path("file"))
                    extra.add(FileRef(name, f.string("sha256"), f.long("bytes")))
                }
            }
            return ArtifactInfo(backend, precision, file, a.string("sha256"), a.long("bytes"), layout, entries,
                a.bool("runs_on_host"), extra)
        }
    }
}

/** Typed access to one JSON object, with errors naming the file and the field path. */
internal class Json(val obj: JSONObject, val source: String, val where: String) {
    fun path(name: String): String = if (where.isEmpty()) name else "$where.$name"

    fun fail(name: String, problem: String): Nothing = throw BundleError(source, path(name), problem)

    private fun raw(name: String): Any? {
        val v = obj.opt(name)
        return if (v == null || v == JSONObject.NULL) null else v
    }

    private fun expected(name: String, what: String): Nothing =
        fail(name, if (obj.has(name)) "expected $what, got ${obj.opt(name)}" else "missing (expected $what)")

    fun string(name: String): String = raw(name) as? String ?: expected(name, "a string")

    fun optString(name: String): String? {
        val v = raw(name) ?: return null
        return v as? String ?: expected(name, "a string")
    }

    fun bool(name: String): Boolean = raw(name) as? Boolean ?: expected(name, "true or false")

    fun int(name: String): Int {
        val v = raw(name)
        return if (v is Int) v else if (v is Long && v >= Int.MIN_VALUE && v <= Int.MAX_VALUE) v.toInt()
        else expected(name, "an integer")
    }

    fun long(name: String): Long {
        val v = raw(name)
        return if (v is Int) v.toLong() else if (v is Long) v else expected(name, "an integer")
    }

    fun double(name: String): Double {
        val v = raw(name)
        return if (v is Number) v.toDouble() else expected(name, "a number")
    }

    fun oneOf(name: String, allowed: List<String>): String {
        val v = string(name)
        if (!allowed.contains(v)) fail(name, "expected one of ${allowed.joinToString(", ")}, got $v")
        return v
    }

    fun obj(name: String): Json = Json(raw(name) as? JSONObject ?: expected(name, "an object"), source, path(name))

    fun array(name: String): JSONArray = raw(name) as? JSONArray ?: expected(name, "a list")

    fun optArray(name: String): JSONArray? {
        val v = raw(name) ?: return null
        return v as? JSONArray ?: expected(name, "a list")
    }

    fun item(array: JSONArray, name: String, i: Int): Json {
        val v = array.opt(i) as? JSONObject ?: throw BundleError(source, "${path(name)}[$i]",
            "expected an object, got ${array.opt(i)}")
        return Json(v, source, "${path(name)}[$i]")
    }

    fun ints(name: String): List<Int> {
        val a = array(name)
        val out = ArrayList<Int>()
        for (i in 0 until a.length()) {
            val v = a.opt(i)
            if (v !is Int) throw BundleError(source, "${path(name)}[$i]", "expected an integer, got $v")
            out.add(v)
        }
        return out
    }

    fun doubles(name: String): List<Double> {
        val a = array(name)
        val out = ArrayList<Double>()
        for (i in 0 until a.length()) {
            val v = a.opt(i)
            if (v !is Number) throw BundleError(source, "${path(name)}[$i]", "expected a number, got $v")
            out.add(v.toDouble())
        }
        return out
    }

    fun strings(name: String): List<String> {
        val a = array(name)
        val out = ArrayList<String>()
        for (i in 0 until a.length()) {
            out.add(a.opt(i) as? String ?: throw BundleError(source, "${path(name)}[$i]",
                "expected a string, got ${a.opt(i)}"))
        }
        return out
    }
}
