package dev.resflex.core

import dev.resflex.selector.Document
import dev.resflex.selector.SchemaRules
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** A stage scale factor (Resizable Networks), in (0, 1]. */
private val STAGE_SCALE = SchemaRules.Rule(exclusiveMinimum = 0.0, maximum = 1.0)

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
    val inputShape: List<Int>,
    /** Resizable Networks: one factor per stage (several entries may share a resolution); null otherwise. */
    val stageScales: List<Double>? = null
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
    val extraFiles: List<FileRef>,
    /** The units the LUT may offer its entries on (null: all its backend's); TFLite int8's CPU-only one: ["CPU"]. */
    val computeUnits: List<String>? = null
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
        val PRECISIONS = listOf("fp32", "fp16", "int8", "dynamic_int8", "int4")
        @JvmField
        val LAYOUTS = listOf("NCHW", "NHWC")
        /** Where an artifact of each backend can run (schema.py COMPUTE_UNITS). */
        @JvmField
        val COMPUTE_UNITS = mapOf("executorch" to listOf("XNNPACK"),
            "coreml" to listOf("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"),
            "tflite" to listOf("CPU", "GPU", "NNAPI"), "onnx" to listOf("CPUExecutionProvider"))
        /** InputSpec.interpolation values this reader implements (the README algorithm; "bilinear" is its old name). */
        @JvmField
        val INTERPOLATIONS = listOf("bilinear_antialias", "bilinear")

        /** Parse the text of a manifest.json; `source` names it in errors. */
        @JvmStatic
        fun parse(text: String, source: String = FILE): Manifest {
            if (Document.tooDeep(text)) throw BundleError(source, null, Document.TOO_DEEP)
            val doc = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw BundleError(source, null, "not valid JSON: ${e.message}")
            }
            return fromJson(doc, source)
        }

        /** manifest.json files reserved for the bundle's own documents (schema.py RESERVED_FILES). */
        @JvmField
        val RESERVED = listOf("manifest.json", "lut.json", "selector_policy.json")

        /**
         * Read and check a manifest.json: types, the ranges of mobile/bundle/schema.py `RULES` (via
         * [SchemaRules]) and its checks across fields (unique resolutions, inputs, files and entries; an ONNX
         * entry names a file of its artifact).
         */
        @JvmStatic
        fun fromJson(doc: JSONObject, source: String = FILE): Manifest {
            val top = Json(doc, source, "")
            val kind = doc.opt("kind")
            if (kind != KIND) throw BundleError(source, "kind", "is $kind, expected $KIND")
            val version = doc.opt("schema_version")
            if (version !is String || !SchemaRules.VERSION.matches(version)) {
                throw BundleError(source, "schema_version", "$version is not supported by this reader (expected " +
                    "\"$SCHEMA_MAJOR.MINOR\", major $SCHEMA_MAJOR); update the app to read it")
            }
            val m = top.obj("model")
            val model = ModelInfo(m.string("arch"), m.string("method"), m.double("width", SchemaRules.POS),
                m.int("num_classes", SchemaRules.COUNT), m.ints("train_resolutions", SchemaRules.RES, true),
                m.strings("class_names"), m.string("checkpoint_sha256", SchemaRules.SHA))
            val inputs = ArrayList<InputSpec>()
            val rawInputs = top.array("inputs")
            for (i in 0 until rawInputs.length()) {
                val s = top.item(rawInputs, "inputs", i)
                val spec = InputSpec(s.int("resolution", SchemaRules.RES),
                    s.int("resize_shorter_to", SchemaRules.RES), s.int("crop", SchemaRules.RES),
                    s.doubles("mean", SchemaRules.ANY), s.doubles("std", SchemaRules.POS),
                    s.optString("interpolation") ?: "bilinear",
                    s.optString("value_range") ?: "RGB in [0, 1] before mean/std")
                if (spec.mean.size != 3) s.fail("mean", "expected 3 numbers (R, G, B), got ${spec.mean}")
                if (spec.std.size != 3) s.fail("std", "expected 3 numbers (R, G, B), got ${spec.std}")
                if (!INTERPOLATIONS.contains(spec.interpolation)) {
                    s.fail("interpolation", "${spec.interpolation} is not implemented here; expected one of " +
                        INTERPOLATIONS.joinToString(", "))
                }
                if (spec.resizeShorterTo < spec.crop) {
                    s.fail("crop", "expected 1 ≤ crop ≤ resize_shorter_to, got crop ${spec.crop}, resize_shorter_to " +
                        "${spec.resizeShorterTo}")
                }
                for (k in inputs.indices) {
                    if (inputs[k].resolution == spec.resolution) {
                        s.fail("resolution", "duplicate input resolution ${spec.resolution} (also inputs[$k])")
                    }
                }
                inputs.add(spec)
            }
            val artifacts = ArrayList<ArtifactInfo>()
            val files = HashMap<String, String>()
            val rawArtifacts = top.array("artifacts")
            for (i in 0 until rawArtifacts.length()) {
                val a = artifact(top.item(rawArtifacts, "artifacts", i))
                val where = "artifacts[$i]"
                val own = ArrayList<String>()
                own.add(a.file)
                for (x in a.extraFiles) own.add(x.file)
                for (k in own.indices) {
                    val field = if (k == 0) "$where.file" else "$where.extra_files[${k - 1}].file"
                    val f = own[k]
                    if (RESERVED.contains(f)) {
                        throw BundleError(source, field, "'$f' is reserved for the bundle's own documents")
                    }
                    val first = files[f]
                    if (first != null) throw BundleError(source, field, "duplicate artifact file '$f' (also $first)")
                    files[f] = field
                }
                for (j in a.entries.indices) {
                    val e = a.entries[j]
                    for (k in 0 until j) {
                        if (a.entries[k].name == e.name) {
                            throw BundleError(source, "$where.entries[$j].name", "duplicate entry name ${e.name} " +
                                "(also entries[$k])")
                        }
                        if (a.entries[k].resolution == e.resolution &&
                            (a.entries[k].stageScales ?: listOf<Double>()) == (e.stageScales ?: listOf<Double>())) {
                            throw BundleError(source, "$where.entries[$j].resolution", "duplicate entry (resolution, " +
                                "stage scales) ${e.resolution}${if (e.stageScales != null) " " + e.stageScales else ""} " +
                                "(also entries[$k])")
                        }
                    }
                    val path = entryFile(a, e.name)
                    if (path != null && !own.contains(path)) {
                        throw BundleError(source, "$where.entries[$j].name", "'${e.name}' names the file '$path', " +
                            "which is not this artifact's file or one of its extra_files (each listed with a sha256)")
                    }
                }
                artifacts.add(a)
            }
            return Manifest(model, top.ints("resolutions", SchemaRules.RES, true), inputs, artifacts, version)
        }

        /** The bundle-relative file an entry names, for backends whose entries are files (ONNX); else null. */
        @JvmStatic
        fun entryFile(artifact: ArtifactInfo, name: String): String? {
            if (artifact.backend != "onnx") return null
            val slash = artifact.file.lastIndexOf('/')
            return if (slash < 0) name else artifact.file.substring(0, slash + 1) + name
        }

        private fun artifact(a: Json): ArtifactInfo {
            val backend = a.oneOf("backend", BACKENDS)
            val precision = a.oneOf("precision", PRECISIONS)
            val layout = a.oneOf("layout", LAYOUTS)
            val file = a.string("file")
            BundlePaths.checkRelative(file, a.source, a.path("file"))
            val entries = ArrayList<EntryInfo>()
            val rawEntries = a.array("entries")
            if (rawEntries.length() == 0) a.fail("entries", "an artifact serves at least one resolution; got none")
            for (j in 0 until rawEntries.length()) {
                val e = a.item(rawEntries, "entries", j)
                val scales = if (e.optArray("stage_scales") != null) e.doubles("stage_scales", STAGE_SCALE) else null
                entries.add(EntryInfo(e.int("resolution", SchemaRules.RES), e.string("name", SchemaRules.ENTRY_NAME),
                    e.string("input_name"), e.string("output_name"), e.ints("input_shape", SchemaRules.COUNT, false),
                    scales))
            }
            val extra = ArrayList<FileRef>()
            val rawExtra = a.optArray("extra_files")
            if (rawExtra != null) {
                for (j in 0 until rawExtra.length()) {
                    val f = a.item(rawExtra, "extra_files", j)
                    val name = f.string("file")
                    BundlePaths.checkRelative(name, f.source, f.path("file"))
                    extra.add(FileRef(name, f.string("sha256", SchemaRules.SHA), f.long("bytes", SchemaRules.NONNEG)))
                }
            }
            val parity = a.optArray("parity")
            if (parity != null) {
                for (j in 0 until parity.length()) {
                    val p = a.item(parity, "parity", j)
                    p.int("resolution", SchemaRules.RES)
                    p.long("samples", SchemaRules.COUNT)
                    p.double("max_rel_error", SchemaRules.NONNEG)
                    for (name in listOf("top1_agreement", "top1_artifact", "top1_torch")) {
                        p.double(name, SchemaRules.FRACTION)
                    }
                }
            }
            a.optDouble("convert_seconds", SchemaRules.NONNEG)
            val units = if (a.optArray("compute_units") != null) a.strings("compute_units") else null
            if (units != null) {
                val allowed = COMPUTE_UNITS[backend] ?: listOf()
                for (u in units) {
                    if (!allowed.contains(u) || units.indexOf(u) != units.lastIndexOf(u)) {
                        a.fail("compute_units", "$units: expected a non-empty list of distinct $backend compute " +
                            "units: ${allowed.joinToString(", ")}")
                    }
                }
                if (units.isEmpty()) {
                    a.fail("compute_units", "[]: expected a non-empty list of $backend compute units: " +
                        allowed.joinToString(", "))
                }
            }
            return ArtifactInfo(backend, precision, file, a.string("sha256", SchemaRules.SHA),
                a.long("bytes", SchemaRules.NONNEG), layout, entries, a.bool("runs_on_host"), extra, units)
        }
    }
}

/**
 * Typed access to one JSON object, with errors naming the file and the field path; a `rule` ([SchemaRules]) adds
 * the range. Numbers must be finite and integers within ±(2^53 − 1), as everywhere in the schema.
 */
internal class Json(val obj: JSONObject, val source: String, val where: String) {
    fun path(name: String): String = if (where.isEmpty()) name else "$where.$name"

    fun fail(name: String, problem: String): Nothing = throw BundleError(source, path(name), problem)

    private fun raw(name: String): Any? {
        val v = obj.opt(name)
        return if (v == null || v == JSONObject.NULL) null else v
    }

    private fun expected(name: String, what: String): Nothing =
        fail(name, if (obj.has(name)) "expected $what, got ${obj.opt(name)}" else "missing (expected $what)")

    fun string(name: String, rule: SchemaRules.Rule? = null): String {
        val s = raw(name) as? String ?: expected(name, "a string")
        val p = rule?.problem(s)
        if (p != null) fail(name, p)
        return s
    }

    fun optString(name: String): String? {
        val v = raw(name) ?: return null
        return v as? String ?: expected(name, "a string")
    }

    fun bool(name: String): Boolean = raw(name) as? Boolean ?: expected(name, "true or false")

    /** An integer that must fit an Int: every such field has a rule bounding it. */
    fun int(name: String, rule: SchemaRules.Rule): Int {
        val n = long(name, rule)
        if (n < Int.MIN_VALUE || n > Int.MAX_VALUE) fail(name, "$n is out of range")
        return n.toInt()
    }

    fun long(name: String, rule: SchemaRules.Rule? = null): Long {
        val v = raw(name)
        if (v !is Int && v !is Long) expected(name, "an integer")
        val n = SchemaRules.integer(v) ?: fail(name, SchemaRules.whyNot(v, true))
        val p = rule?.problem(n.toDouble())
        if (p != null) fail(name, p)
        return n
    }

    fun double(name: String, rule: SchemaRules.Rule? = null): Double {
        val v = raw(name)
        if (v !is Number) expected(name, "a number")
        val d = SchemaRules.number(v) ?: fail(name, SchemaRules.whyNot(v, false))
        val p = rule?.problem(d)
        if (p != null) fail(name, p)
        return d
    }

    fun optDouble(name: String, rule: SchemaRules.Rule? = null): Double? {
        if (raw(name) == null) return null
        return double(name, rule)
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

    /** A list of integers, each within `rule`; with `unique`, none repeated. */
    fun ints(name: String, rule: SchemaRules.Rule, unique: Boolean): List<Int> {
        val a = array(name)
        val out = ArrayList<Int>()
        for (i in 0 until a.length()) {
            val v = a.opt(i)
            val at = "${path(name)}[$i]"
            if (v !is Int && v !is Long) throw BundleError(source, at, "expected an integer, got $v")
            val n = SchemaRules.integer(v) ?: throw BundleError(source, at, SchemaRules.whyNot(v, true))
            val p = rule.problem(n.toDouble())
            if (p != null) throw BundleError(source, at, p)
            if (n < Int.MIN_VALUE || n > Int.MAX_VALUE) throw BundleError(source, at, "$n is out of range")
            if (unique && out.contains(n.toInt())) {
                throw BundleError(source, at, "repeated value $n; each may appear once (also [${out.indexOf(n.toInt())}])")
            }
            out.add(n.toInt())
        }
        return out
    }

    /** A list of finite numbers, each within `rule`. */
    fun doubles(name: String, rule: SchemaRules.Rule): List<Double> {
        val a = array(name)
        val out = ArrayList<Double>()
        for (i in 0 until a.length()) {
            val v = a.opt(i)
            val at = "${path(name)}[$i]"
            if (v !is Number) throw BundleError(source, at, "expected a number, got $v")
            val d = SchemaRules.number(v) ?: throw BundleError(source, at, SchemaRules.whyNot(v, false))
            val p = rule.problem(d)
            if (p != null) throw BundleError(source, at, p)
            out.add(d)
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
