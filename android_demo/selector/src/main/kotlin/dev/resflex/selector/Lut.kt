package dev.resflex.selector

import java.io.File
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** A lut.json (or policy) document that does not have the shape the selector needs. */
class SchemaException(message: String) : IllegalArgumentException(message)

/**
 * The ranges of the bundle schema, as `RULES` in mobile/bundle/schema.py defines them (that table is the one place;
 * this is its copy for the Kotlin readers, Lut here and Manifest in core): every number finite, every integer within
 * ±(2^53 − 1), `schema_version` "1.MINOR", and per field a minimum / exclusive minimum / maximum, a pattern (sha256,
 * entry name) or a safe relative path.
 */
object SchemaRules {
    /** 2^53 − 1: integers every reader (Python, a Kotlin Long, a Swift Int, a double) holds exactly. */
    const val MAX_INT = 9007199254740991L
    /** schema_version of a document this reader understands (^1\.\d+$). */
    @JvmField
    val VERSION = Regex("1\\.[0-9]+")
    @JvmField
    val SHA256 = Regex("[0-9a-f]{64}")
    /** An entry: method / function / signature / file name in its folder. */
    @JvmField
    val NAME = Regex("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

    /** What a value must satisfy beyond its type (schema.py `Rule`). */
    class Rule(
        val minimum: Double? = null,
        val exclusiveMinimum: Double? = null,
        val maximum: Double? = null,
        val pattern: Regex? = null,
        val path: Boolean = false
    ) {
        /** Null when `v` is in range, else the problem ("-1 is out of range (expected ≥ 1 and ≤ 65536)"). */
        fun problem(v: Double): String? {
            val low = minimum
            val high = maximum
            val exclusive = exclusiveMinimum
            if ((low != null && v < low) || (high != null && v > high) || (exclusive != null && v <= exclusive) ||
                v.isNaN()) {
                return "${format(v)} is out of range (expected ${expected()})"
            }
            return null
        }

        /** Null when the string `s` follows the rule's pattern / path rule, else the problem. */
        fun problem(s: String): String? {
            val p = pattern
            if (p != null && !p.matches(s)) return "'$s' does not match ^${p.pattern}$"
            if (path) return pathProblem(s)
            return null
        }

        fun expected(): String {
            val parts = ArrayList<String>()
            if (exclusiveMinimum != null) parts.add("> ${format(exclusiveMinimum)}")
            else if (minimum != null) parts.add("≥ ${format(minimum)}")
            if (maximum != null) parts.add("≤ ${format(maximum)}")
            return parts.joinToString(" and ")
        }
    }

    @JvmField val POS = Rule(exclusiveMinimum = 0.0)
    @JvmField val NONNEG = Rule(minimum = 0.0)
    @JvmField val FRACTION = Rule(minimum = 0.0, maximum = 1.0)
    @JvmField val COUNT = Rule(minimum = 1.0)
    @JvmField val SHA = Rule(pattern = SHA256)
    @JvmField val ENTRY_NAME = Rule(pattern = NAME)
    @JvmField val RES = Rule(minimum = 1.0, maximum = 65536.0)
    /** 0: the runtime's own choice (Core ML). */
    @JvmField val THREADS = Rule(minimum = 0.0, maximum = 4096.0)
    @JvmField val PATH = Rule(path = true)
    /** Only finite (every number is). */
    @JvmField val ANY = Rule()

    /** An integer in JSON (Int or Long, within ±MAX_INT); null for anything else (a double, a string, …). */
    @JvmStatic
    fun integer(v: Any?): Long? {
        val n = if (v is Int) v.toLong() else if (v is Long) v else return null
        return if (n > MAX_INT || n < -MAX_INT) null else n
    }

    /** A finite JSON number (an integer within ±MAX_INT, or a finite double); null for anything else. */
    @JvmStatic
    fun number(v: Any?): Double? {
        if (v is Int || v is Long) return integer(v)?.toDouble()
        if (v !is Number) return null
        val d = v.toDouble()
        return if (d.isNaN() || d.isInfinite()) null else d
    }

    /** Why `v` (an Int/Long beyond ±MAX_INT, a non-finite double) is not what `integer`/`number` take. */
    @JvmStatic
    fun whyNot(v: Any?, integer: Boolean): String = when {
        (v is Int || v is Long) -> "$v is out of range (integers are at most 2^53 − 1)"
        integer -> "expected an integer, got $v"
        v is Number -> "expected a finite number, got $v"
        else -> "expected a number, got $v"
    }

    /**
     * schema.py `safe_relpath`: relative, POSIX, canonical (no '.', '..' or empty parts, no trailing '/'), not
     * starting with '~', no control characters. Null when safe, else the problem.
     */
    @JvmStatic
    fun pathProblem(path: String): String? {
        var bad = path.isEmpty() || path.contains("\\") || path.startsWith("/") || path.startsWith("~")
        for (c in path) if (c.toInt() < 32 || c.toInt() == 0x7f) bad = true
        if (!bad) {
            for (part in path.split("/")) if (part.isEmpty() || part == "." || part == "..") bad = true
        }
        return if (bad) "'$path' is not a safe relative path inside the bundle (no absolute paths, no '..' or '.', " +
            "POSIX separators, no control characters)" else null
    }

    /** An integral double without its ".0" (for bounds and integers in messages). */
    @JvmStatic
    fun format(v: Double): String =
        if (!v.isNaN() && !v.isInfinite() && v == Math.floor(v) && Math.abs(v) <= 9007199254740991.0) v.toLong().toString()
        else v.toString()
}

/** One measured entry of `operating_points[i].latency[device]` (only the fields the selector reads). */
data class LatencyEntry(val runtime: String, val threads: Int, val p50Ms: Double, val energyMj: Double?)

/** One entry of `devices[device].latency_models`: ms = interceptMs + msPerGmac × GMACs. */
data class LatencyModel(
    val runtime: String,
    val precision: String,
    val computeUnit: String,
    val threads: Int,
    val interceptMs: Double,
    val msPerGmac: Double
)

/** What the selector chooses among: resolution × backend × precision × compute unit (× stage scales). */
data class OperatingPoint(
    val resolution: Int,
    val backend: String,
    val precision: String,
    val computeUnit: String,
    val stageScales: List<Double>?,
    val artifact: String,
    val entry: String,
    val macs: Long,
    val top1: Double?,
    val latency: Map<String, List<LatencyEntry>>
)

/** The lookup table of a bundle (lut.json), reduced to what the selector reads; other fields are ignored. */
class Lut(val operatingPoints: List<OperatingPoint>, val latencyModels: Map<String, List<LatencyModel>>) {
    companion object {
        const val KIND = "resflex.lut"
        const val SCHEMA_MAJOR = "1"

        /** Parse the text of a lut.json; `source` names it in error messages. */
        @JvmStatic
        fun parse(text: String, source: String = "lut.json"): Lut {
            if (Document.tooDeep(text)) throw SchemaException("$source: ${Document.TOO_DEEP}")
            val doc = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw SchemaException("$source: not valid JSON: ${e.message}")
            }
            return fromJson(doc, source)
        }

        @JvmStatic
        fun read(file: File): Lut = parse(Document.read(file, file.path), file.path)

        @JvmStatic
        fun fromJson(doc: JSONObject, source: String = "lut.json"): Lut {
            val top = Fields(doc, source)
            if (doc.opt("kind") != KIND) throw SchemaException("$source: kind is ${doc.opt("kind")}, expected $KIND")
            val version = doc.opt("schema_version")
            if (version !is String || !SchemaRules.VERSION.matches(version)) {
                throw SchemaException("$source: schema_version $version is not supported by this reader (expected " +
                    "\"$SCHEMA_MAJOR.MINOR\", major $SCHEMA_MAJOR)")
            }
            val models = LinkedHashMap<String, List<LatencyModel>>()
            val devices = top.optObject("devices")
            if (devices != null) {
                val names = devices.keys()
                while (names.hasNext()) {
                    val name = names.next()
                    models[name] = device(Fields.of(devices.opt(name), "$source: devices.$name"))
                }
            }
            val points = ArrayList<OperatingPoint>()
            val keys = HashMap<List<Any>, Int>()
            val array = top.array("operating_points")
            for (i in 0 until array.length()) {
                val where = "$source: operating_points[$i]"
                val p = point(Fields.of(array.opt(i), where))
                val key = listOf<Any>(p.resolution, p.backend, p.precision, p.computeUnit, p.stageScales ?: listOf<Double>())
                val first = keys[key]
                if (first != null) {
                    throw SchemaException("$where: duplicate operating point (${PointKey.describe(p)}), the same as " +
                        "operating_points[$first]")
                }
                keys[key] = i
                for (device in p.latency.keys) {
                    if (!models.containsKey(device)) {
                        throw SchemaException("$where.latency: device $device is not in devices")
                    }
                }
                points.add(p)
            }
            return Lut(points, models)
        }

        /** devices[name]: its latency models (kept), switch costs and GEMM peak (checked only). */
        private fun device(device: Fields): List<LatencyModel> {
            device.optDouble("gemm_peak_gflops", SchemaRules.POS)
            val list = ArrayList<LatencyModel>()
            val seen = HashMap<List<Any>, Int>()
            val raw = device.optArray("latency_models")
            if (raw != null) {
                for (j in 0 until raw.length()) {
                    val m = Fields.of(raw.opt(j), "${device.where}.latency_models[$j]")
                    val model = LatencyModel(m.string("runtime"), m.string("precision"), m.string("compute_unit"),
                        m.int("threads", SchemaRules.THREADS), m.double("intercept_ms"), m.double("ms_per_gmac"))
                    m.optDouble("mean_abs_rel_error", SchemaRules.NONNEG)
                    m.optLong("points", SchemaRules.COUNT)
                    val key = listOf<Any>(model.runtime, model.precision, model.computeUnit, model.threads)
                    val first = seen[key]
                    if (first != null) {
                        throw SchemaException("${m.where}: duplicate (runtime, precision, compute unit, threads) " +
                            "(${key.joinToString(", ")}), the same as latency_models[$first]")
                    }
                    seen[key] = j
                    list.add(model)
                }
            }
            val costs = device.optArray("switch_costs")
            if (costs != null) {
                val seenCosts = HashMap<List<Any>, Int>()
                for (j in 0 until costs.length()) {
                    val c = Fields.of(costs.opt(j), "${device.where}.switch_costs[$j]")
                    for (name in listOf("switch_loaded_ms", "switch_first_ms", "load_file_ms", "steady_ms")) {
                        c.optDouble(name, SchemaRules.NONNEG)
                    }
                    val key = listOf<Any>(c.string("runtime"), c.string("precision"))
                    val first = seenCosts[key]
                    if (first != null) {
                        throw SchemaException("${c.where}: duplicate (runtime, precision) (${key.joinToString(", ")}), " +
                            "the same as switch_costs[$first]")
                    }
                    seenCosts[key] = j
                }
            }
            return list
        }

        private fun point(f: Fields): OperatingPoint {
            val latency = LinkedHashMap<String, List<LatencyEntry>>()
            val byDevice = f.optObject("latency")
            if (byDevice != null) {
                val names = byDevice.keys()
                while (names.hasNext()) {
                    val name = names.next()
                    val raw = byDevice.opt(name)
                    if (raw !is JSONArray) throw SchemaException("${f.where}.latency.$name: expected a list")
                    val list = ArrayList<LatencyEntry>()
                    val seen = HashMap<List<Any>, Int>()
                    for (j in 0 until raw.length()) {
                        val e = Fields.of(raw.opt(j), "${f.where}.latency.$name[$j]")
                        val entry = latencyEntry(e)
                        val key = listOf<Any>(entry.runtime, entry.threads)
                        val first = seen[key]
                        if (first != null) {
                            throw SchemaException("${e.where}: duplicate (runtime, threads) (${entry.runtime}, " +
                                "${entry.threads}), the same as [$first]")
                        }
                        seen[key] = j
                        list.add(entry)
                    }
                    latency[name] = list
                }
            }
            var scales: ArrayList<Double>? = null
            val rawScales = f.optArray("stage_scales")
            if (rawScales != null) {
                scales = ArrayList()
                for (j in 0 until rawScales.length()) {
                    scales.add(f.item(rawScales, "stage_scales", j, SchemaRules.POS))
                }
            }
            f.optLong("params", SchemaRules.COUNT)
            f.optLong("artifact_bytes", SchemaRules.NONNEG)
            f.optLong("artifact_resolutions", SchemaRules.COUNT)
            val data = f.optObject("top1_data")
            if (data != null) Fields(data, "${f.where}.top1_data").optLong("samples", SchemaRules.COUNT)
            return OperatingPoint(f.int("resolution", SchemaRules.RES), f.string("backend"), f.string("precision"),
                f.string("compute_unit"), scales, f.string("artifact", SchemaRules.PATH),
                f.string("entry", SchemaRules.ENTRY_NAME), f.long("macs", SchemaRules.COUNT),
                f.optDouble("top1", SchemaRules.FRACTION), latency)
        }

        /** One latency measurement: the fields the selector keeps, and the ranges of the others. */
        private fun latencyEntry(e: Fields): LatencyEntry {
            val p50 = e.double("p50_ms", SchemaRules.POS)
            val p90 = e.optDouble("p90_ms", SchemaRules.POS)
            val p99 = e.optDouble("p99_ms", SchemaRules.POS)
            if ((p90 != null && p50 > p90) || (p99 != null && (p50 > p99 || (p90 != null && p90 > p99)))) {
                throw SchemaException("${e.where}: expected p50 ≤ p90 ≤ p99, got ${SchemaRules.format(p50)}, " +
                    "${if (p90 == null) "null" else SchemaRules.format(p90)}, " +
                    "${if (p99 == null) "null" else SchemaRules.format(p99)}")
            }
            e.optLong("runs", SchemaRules.COUNT)
            e.optDouble("peak_memory_mb", SchemaRules.NONNEG)
            e.optDouble("gflops", SchemaRules.NONNEG)
            return LatencyEntry(e.string("runtime"), e.int("threads", SchemaRules.THREADS), p50,
                e.optDouble("energy_mj", SchemaRules.NONNEG))
        }
    }
}

/** "224 executorch fp32 XNNPACK" (+ stage scales): an operating point's key in messages. */
internal object PointKey {
    fun describe(p: OperatingPoint): String =
        "${p.resolution}, ${p.backend}, ${p.precision}, ${p.computeUnit}" +
            (if (p.stageScales != null) ", ${p.stageScales}" else "")
}

/**
 * Typed access to one JSON object's fields, with errors naming the document, the field and what was expected; a
 * `rule` (SchemaRules) adds the range. Numbers must be finite and integers within ±(2^53 − 1).
 */
internal class Fields(val obj: JSONObject, val where: String) {
    companion object {
        fun of(value: Any?, where: String): Fields {
            if (value !is JSONObject) throw SchemaException("$where: expected a JSON object, got $value")
            return Fields(value, where)
        }
    }

    private fun raw(name: String): Any? {
        val v = obj.opt(name)
        return if (v == null || v == JSONObject.NULL) null else v
    }

    private fun fail(name: String, expected: String): Nothing {
        val got = if (obj.has(name)) obj.opt(name) else "nothing"
        throw SchemaException("$where.$name: expected $expected, got $got")
    }

    private fun problem(name: String, problem: String): Nothing = throw SchemaException("$where.$name: $problem")

    private fun check(name: String, v: Double, rule: SchemaRules.Rule?): Double {
        val p = rule?.problem(v)
        if (p != null) problem(name, p)
        return v
    }

    fun string(name: String, rule: SchemaRules.Rule? = null): String {
        val v = raw(name)
        val s = v as? String ?: fail(name, "a string")
        val p = rule?.problem(s)
        if (p != null) problem(name, p)
        return s
    }

    fun long(name: String, rule: SchemaRules.Rule? = null): Long {
        val v = raw(name)
        if (v !is Int && v !is Long) fail(name, "an integer")
        val n = SchemaRules.integer(v) ?: problem(name, SchemaRules.whyNot(v, true))
        check(name, n.toDouble(), rule)
        return n
    }

    /** An integer field that must fit an Int: every such field has a rule bounding it (resolution, threads). */
    fun int(name: String, rule: SchemaRules.Rule): Int {
        val n = long(name, rule)
        if (n < Int.MIN_VALUE || n > Int.MAX_VALUE) problem(name, "$n is out of range")
        return n.toInt()
    }

    fun optLong(name: String, rule: SchemaRules.Rule? = null): Long? {
        if (raw(name) == null) return null
        return long(name, rule)
    }

    fun double(name: String, rule: SchemaRules.Rule? = null): Double {
        val v = raw(name)
        if (v !is Number) fail(name, "a number")
        return check(name, SchemaRules.number(v) ?: problem(name, SchemaRules.whyNot(v, false)), rule)
    }

    fun optDouble(name: String, rule: SchemaRules.Rule? = null): Double? {
        val v = raw(name) ?: return null
        if (v !is Number) fail(name, "a number or null")
        return check(name, SchemaRules.number(v) ?: problem(name, SchemaRules.whyNot(v, false)), rule)
    }

    /** Number `i` of the list `array` (field `name`), finite and within `rule`. */
    fun item(array: JSONArray, name: String, i: Int, rule: SchemaRules.Rule?): Double {
        val v = array.opt(i)
        val at = "$name[$i]"
        if (v !is Number) throw SchemaException("$where.$at: expected a number, got $v")
        val d = SchemaRules.number(v) ?: throw SchemaException("$where.$at: ${SchemaRules.whyNot(v, false)}")
        val p = rule?.problem(d)
        if (p != null) throw SchemaException("$where.$at: $p")
        return d
    }

    fun array(name: String): JSONArray = optArray(name) ?: fail(name, "a list")

    fun optArray(name: String): JSONArray? {
        val v = raw(name) ?: return null
        return v as? JSONArray ?: fail(name, "a list or null")
    }

    fun optObject(name: String): JSONObject? {
        val v = raw(name) ?: return null
        return v as? JSONObject ?: fail(name, "a JSON object or null")
    }
}
