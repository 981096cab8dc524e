package dev.resflex.selector

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/**
 * The app's budget plus the declarative table that tightens it; defaults and meaning as in the Python reference
 * (resflex.mobile.selector, module docstring). Thermal lists are indexed by the normalised level 0..3.
 * Construction validates the table (IllegalArgumentException naming the field and what was expected).
 */
data class Policy(
    val latencyBudgetMs: Double = 33.0,
    val minTop1: Double = 0.0,
    val runtime: String? = null,
    val threads: Int? = null,
    val thermalBudget: List<Double> = listOf(1.0, 0.9, 0.75, 0.5),
    val thermalCpuFactor: List<Double> = listOf(1.0, 1.1, 1.3, 1.6),
    val batteryLow: Double = 0.2,
    val batteryCritical: Double = 0.1,
    val batteryLowBudget: Double = 0.85,
    val batteryCriticalBudget: Double = 0.6,
    val powerSaveBudget: Double = 0.8,
    val energySlackLow: Double = 0.02,
    val energySlackCritical: Double = 0.05,
    val energySlackPowerSave: Double = 0.02,
    val cpuLoadK: Double = 0.5,
    val acceleratorUnits: List<String> = listOf("GPU", "NNAPI", "CPU_AND_GPU", "CPU_AND_NE", "ALL"),
    val emaAlpha: Double = 0.3,
    val slowdownMin: Double = 0.5,
    val slowdownMax: Double = 4.0,
    val slowdownRelax: Double = 0.005,
    val throttleReport: Double = 1.2,
    val hysteresisFrames: Int = 5,
    val hysteresisMargin: Double = 0.1,
    val backoffMaxFrames: Int = 320,
    val missFrames: Int = 2,
    val probeWindowFrames: Int = 1800,
    val fallbackGmacsPerS: Double = 5.0,
    val unknownThermal: Int = 2
) {
    init {
        validate()
    }

    private fun validate() {
        number("latency_budget_ms", latencyBudgetMs, 0.0, 1e9, loOpen = true)
        number("min_top1", minTop1, -1e9, 1e9)
        if (threads != null && threads < 1) bad("threads", threads, "a positive integer or null")
        levels("thermal_budget", thermalBudget, 0.0, 1.0, -1)
        levels("thermal_cpu_factor", thermalCpuFactor, 1.0, 1e6, 1)
        number("battery_critical", batteryCritical, 0.0, 1.0)
        number("battery_low", batteryLow, batteryCritical, 1.0)
        number("battery_low_budget", batteryLowBudget, 0.0, 1.0, loOpen = true)
        number("battery_critical_budget", batteryCriticalBudget, 0.0, batteryLowBudget, loOpen = true)
        number("power_save_budget", powerSaveBudget, 0.0, 1.0, loOpen = true)
        number("energy_slack_low", energySlackLow, 0.0, 1.0)
        number("energy_slack_critical", energySlackCritical, energySlackLow, 1.0)
        number("energy_slack_power_save", energySlackPowerSave, 0.0, 1.0)
        number("cpu_load_k", cpuLoadK, 0.0, 1.0, hiOpen = true)
        number("ema_alpha", emaAlpha, 0.0, 1.0, loOpen = true)
        number("slowdown_min", slowdownMin, 0.0, 1.0, loOpen = true)
        number("slowdown_max", slowdownMax, 1.0, 1e6)
        number("slowdown_relax", slowdownRelax, 0.0, 1.0)
        number("throttle_report", throttleReport, 1.0, 1e6)
        if (hysteresisFrames < 1) bad("hysteresis_frames", hysteresisFrames, "a positive integer")
        if (backoffMaxFrames < hysteresisFrames) {
            bad("backoff_max_frames", backoffMaxFrames, "an integer ≥ hysteresis_frames")
        }
        if (missFrames < 1 || missFrames > 1000000) {
            bad("miss_frames", missFrames, "a positive integer (at most 1000000)")
        }
        if (probeWindowFrames < 1 || probeWindowFrames > 1000000000) {
            bad("probe_window_frames", probeWindowFrames, "a positive integer (at most 1000000000)")
        }
        number("hysteresis_margin", hysteresisMargin, 0.0, 1.0, hiOpen = true)
        number("fallback_gmacs_per_s", fallbackGmacsPerS, 0.0, 1e9, loOpen = true)
        if (unknownThermal < 0 || unknownThermal > 3) {
            bad("unknown_thermal", unknownThermal, "a normalised thermal level 0, 1, 2 or 3")
        }
    }

    private fun bad(field: String, value: Any?, expected: String): Nothing =
        throw IllegalArgumentException("policy: $field = $value, expected $expected")

    private fun number(field: String, v: Double, lo: Double, hi: Double, loOpen: Boolean = false,
                       hiOpen: Boolean = false) {
        if (v.isNaN() || (if (loOpen) v <= lo else v < lo) || (if (hiOpen) v >= hi else v > hi)) {
            bad(field, v, "a number in ${if (loOpen) "(" else "["}$lo, $hi${if (hiOpen) ")" else "]"}")
        }
    }

    private fun levels(field: String, v: List<Double>, lo: Double, hi: Double, order: Int) {
        var ok = v.size == 4
        if (ok) {
            for (i in 0 until 4) {
                val x = v[i]
                if (!(lo <= x && x <= hi) || (lo == 0.0 && x == 0.0)) ok = false
            }
        }
        if (!ok) bad(field, v, "4 numbers (normalised thermal levels 0..3) in ${if (lo == 0.0) "(0" else "[1"}, $hi]")
        for (i in 0 until 3) {
            if ((v[i + 1] - v[i]) * order < 0) {
                bad(field, v, if (order < 0) "non-increasing" else "non-decreasing from level 0 to 3")
            }
        }
    }

    companion object {
        const val KIND = "resflex.selector_policy"
        const val VERSION = "1.0"
        const val FILE = "selector_policy.json"

        @JvmField
        val DEFAULT = Policy()

        /** A policy JSON text (any subset of the fields, over `base`), e.g. a bundle's selector_policy.json. */
        @JvmStatic
        fun parse(text: String, base: Policy = DEFAULT, source: String = FILE): Policy {
            if (Document.tooDeep(text)) throw SchemaException("$source: ${Document.TOO_DEEP}")
            val doc = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw SchemaException("$source: not valid JSON: ${e.message}")
            }
            return fromJson(doc, base, source)
        }

        /** `base` with the fields present in `data` replaced (JSON names as in Python); unknown fields are refused. */
        @JvmStatic
        fun fromJson(data: JSONObject, base: Policy = DEFAULT, source: String = "policy"): Policy {
            val kind = data.opt("kind")
            if (kind != null && kind != KIND) throw IllegalArgumentException("$source: kind must be $KIND")
            val version = data.opt("schema_version")
            if (version != null && (version !is String || version.split(".")[0] != VERSION.split(".")[0])) {
                throw IllegalArgumentException("$source: schema_version $version is not supported (major " +
                    "${VERSION.split(".")[0]})")
            }
            val unknown = ArrayList<String>()
            val f = PolicyFields(data, source)
            val keys = data.keys()
            while (keys.hasNext()) {
                val k = keys.next()
                if (k == "kind" || k == "schema_version") continue
                if (!NAMES.contains(k)) unknown.add(k)
            }
            if (unknown.isNotEmpty()) {
                unknown.sort()
                throw IllegalArgumentException(
                    "$source: unknown policy field(s) $unknown; known: ${NAMES.joinToString(", ")}")
            }
            try {
                return Policy(
                    latencyBudgetMs = f.double("latency_budget_ms", base.latencyBudgetMs),
                    minTop1 = f.double("min_top1", base.minTop1),
                    runtime = f.optString("runtime", base.runtime),
                    threads = f.optInt("threads", base.threads),
                    thermalBudget = f.doubles("thermal_budget", base.thermalBudget),
                    thermalCpuFactor = f.doubles("thermal_cpu_factor", base.thermalCpuFactor),
                    batteryLow = f.double("battery_low", base.batteryLow),
                    batteryCritical = f.double("battery_critical", base.batteryCritical),
                    batteryLowBudget = f.double("battery_low_budget", base.batteryLowBudget),
                    batteryCriticalBudget = f.double("battery_critical_budget", base.batteryCriticalBudget),
                    powerSaveBudget = f.double("power_save_budget", base.powerSaveBudget),
                    energySlackLow = f.double("energy_slack_low", base.energySlackLow),
                    energySlackCritical = f.double("energy_slack_critical", base.energySlackCritical),
                    energySlackPowerSave = f.double("energy_slack_power_save", base.energySlackPowerSave),
                    cpuLoadK = f.double("cpu_load_k", base.cpuLoadK),
                    acceleratorUnits = f.strings("accelerator_units", base.acceleratorUnits),
                    emaAlpha = f.double("ema_alpha", base.emaAlpha),
                    slowdownMin = f.double("slowdown_min", base.slowdownMin),
                    slowdownMax = f.double("slowdown_max", base.slowdownMax),
                    slowdownRelax = f.double("slowdown_relax", base.slowdownRelax),
                    throttleReport = f.double("throttle_report", base.throttleReport),
                    hysteresisFrames = f.int("hysteresis_frames", base.hysteresisFrames),
                    hysteresisMargin = f.double("hysteresis_margin", base.hysteresisMargin),
                    backoffMaxFrames = f.int("backoff_max_frames", base.backoffMaxFrames),
                    missFrames = f.int("miss_frames", base.missFrames),
                    probeWindowFrames = f.int("probe_window_frames", base.probeWindowFrames),
                    fallbackGmacsPerS = f.double("fallback_gmacs_per_s", base.fallbackGmacsPerS),
                    unknownThermal = f.int("unknown_thermal", base.unknownThermal)
                )
            } catch (e: SchemaException) {
                throw e
            } catch (e: IllegalArgumentException) {
                throw IllegalArgumentException("$source: " + (e.message ?: "").removePrefix("policy: "))
            }
        }

        internal val NAMES = listOf("accelerator_units", "backoff_max_frames", "battery_critical",
            "battery_critical_budget", "battery_low", "battery_low_budget", "cpu_load_k", "ema_alpha",
            "energy_slack_critical", "energy_slack_low", "energy_slack_power_save", "fallback_gmacs_per_s",
            "hysteresis_frames", "hysteresis_margin", "latency_budget_ms", "min_top1", "miss_frames", "power_save_budget",
            "probe_window_frames", "runtime", "slowdown_max", "slowdown_min", "slowdown_relax", "thermal_budget", "thermal_cpu_factor", "threads",
            "throttle_report", "unknown_thermal")
    }
}

/** Typed policy fields (numbers may be written as integers; booleans are never numbers). */
internal class PolicyFields(private val obj: JSONObject, private val source: String) {
    private fun fail(name: String, expected: String): Nothing =
        throw SchemaException("$source: $name = ${obj.opt(name)}, expected $expected")

    private fun raw(name: String): Any? {
        val v = obj.opt(name)
        return if (v == JSONObject.NULL) null else v
    }

    fun double(name: String, current: Double): Double {
        if (!obj.has(name)) return current
        val v = raw(name)
        return if (v is Number) v.toDouble() else fail(name, "a number")
    }

    fun int(name: String, current: Int): Int {
        if (!obj.has(name)) return current
        return raw(name) as? Int ?: fail(name, "an integer")
    }

    fun optInt(name: String, current: Int?): Int? {
        if (!obj.has(name)) return current
        val v = raw(name) ?: return null
        return v as? Int ?: fail(name, "an integer or null")
    }

    fun optString(name: String, current: String?): String? {
        if (!obj.has(name)) return current
        val v = raw(name) ?: return null
        return v as? String ?: fail(name, "a string or null")
    }

    fun doubles(name: String, current: List<Double>): List<Double> {
        if (!obj.has(name)) return current
        val a = raw(name) as? JSONArray ?: fail(name, "a list of numbers")
        val out = ArrayList<Double>()
        for (i in 0 until a.length()) {
            val v = a.opt(i)
            if (v !is Number) fail(name, "a list of numbers")
            out.add(v.toDouble())
        }
        return out
    }

    fun strings(name: String, current: List<String>): List<String> {
        if (!obj.has(name)) return current
        val a = raw(name) as? JSONArray ?: fail(name, "a list of compute unit names")
        val out = ArrayList<String>()
        for (i in 0 until a.length()) {
            out.add(a.opt(i) as? String ?: fail(name, "a list of compute unit names"))
        }
        return out
    }
}
