package dev.resflex.selector

import java.io.File
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** A lut.json (or policy) document that does not have the shape the selector needs. */
class SchemaException(message: String) : IllegalArgumentException(message)

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
            val doc = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw SchemaException("$source: not valid JSON: ${e.message}")
            }
            return fromJson(doc, source)
        }

        @JvmStatic
        fun read(file: File): Lut {
            if (!file.isFile) throw SchemaException("$file: file not found")
            return parse(file.readText(Charsets.UTF_8), file.path)
        }

        @JvmStatic
        fun fromJson(doc: JSONObject, source: String = "lut.json"): Lut {
            val top = Fields(doc, source)
            if (doc.opt("kind") != KIND) throw SchemaException("$source: kind is ${doc.opt("kind")}, expected $KIND")
            val version = doc.opt("schema_version")
            if (version !is String || version.split(".")[0] != SCHEMA_MAJOR) {
                throw SchemaException("$source: schema_version $version is not supported by this reader (major " +
                    "$SCHEMA_MAJOR)")
            }
            val points = ArrayList<OperatingPoint>()
            val array = top.array("operating_points")
            for (i in 0 until array.length()) {
                points.add(point(Fields.of(array.opt(i), "$source: operating_points[$i]")))
            }
            val models = LinkedHashMap<String, List<LatencyModel>>()
            val devices = top.optObject("devices")
            if (devices != null) {
                val names = devices.keys()
                while (names.hasNext()) {
                    val name = names.next()
                    val device = Fields.of(devices.opt(name), "$source: devices.$name")
                    val list = ArrayList<LatencyModel>()
                    val raw = device.optArray("latency_models")
                    if (raw != null) {
                        for (j in 0 until raw.length()) {
                            val m = Fields.of(raw.opt(j), "${device.where}.latency_models[$j]")
                            list.add(LatencyModel(m.string("runtime"), m.string("precision"), m.string("compute_unit"),
                                m.int("threads"), m.double("intercept_ms"), m.double("ms_per_gmac")))
                        }
                    }
                    models[name] = list
                }
            }
            return Lut(points, models)
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
                    for (j in 0 until raw.length()) {
                        val e = Fields.of(raw.opt(j), "${f.where}.latency.$name[$j]")
                        list.add(LatencyEntry(e.string("runtime"), e.int("threads"), e.double("p50_ms"),
                            e.optDouble("energy_mj")))
                    }
                    latency[name] = list
                }
            }
            var scales: ArrayList<Double>? = null
            val rawScales = f.optArray("stage_scales")
            if (rawScales != null) {
                scales = ArrayList()
                for (j in 0 until rawScales.length()) {
                    val v = rawScales.opt(j)
                    if (v !is Number) throw SchemaException("${f.where}.stage_scales[$j]: expected a number, got $v")
                    scales.add(v.toDouble())
                }
            }
            return OperatingPoint(f.int("resolution"), f.string("backend"), f.string("precision"),
                f.string("compute_unit"), scales, f.string("artifact"), f.string("entry"), f.long("macs"),
                f.optDouble("top1"), latency)
        }
    }
}

/** Typed access to one JSON object's fields, with errors naming the document, the field and what was expected. */
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

    fun string(name: String): String {
        val v = raw(name)
        return v as? String ?: fail(name, "a string")
    }

    fun long(name: String): Long {
        val v = raw(name)
        return if (v is Int) v.toLong() else if (v is Long) v else fail(name, "an integer")
    }

    fun int(name: String): Int {
        val v = raw(name)
        return v as? Int ?: fail(name, "an integer")
    }

    fun double(name: String): Double {
        val v = raw(name)
        return if (v is Number) v.toDouble() else fail(name, "a number")
    }

    fun optDouble(name: String): Double? {
        val v = raw(name) ?: return null
        return if (v is Number) v.toDouble() else fail(name, "a number or null")
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
