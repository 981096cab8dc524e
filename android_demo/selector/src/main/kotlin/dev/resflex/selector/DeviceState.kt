package dev.resflex.selector

/**
 * What the phone's sensors say now. Values are not validated here (hence `Any?`): `Selector.choose` sanitises
 * them and never throws on them. Numbers are any [Number] (a Boolean is never a number).
 *
 * battery: fraction 0..1; charging, powerSave: Boolean; thermal: a level on `thermalScale`;
 * cpuLoad: fraction 0..1 of the CPU busy with other work; thermalScale: "normalized" (0–3),
 * "android" (PowerManager.THERMAL_STATUS_NONE…SHUTDOWN, 0–6) or "ios" (ProcessInfo.ThermalState, 0–3).
 */
data class DeviceState(
    val battery: Any? = 1.0,
    val charging: Any? = false,
    val powerSave: Any? = false,
    val thermal: Any? = 0,
    val cpuLoad: Any? = 0.0,
    val thermalScale: Any? = "normalized"
)

/** One choice: the operating point, why, and what it was expected to cost. */
data class Decision(
    /** Position in lut.operatingPoints. */
    val index: Int,
    val point: OperatingPoint,
    /** Includes the feedback slowdown. */
    val predictedMs: Double,
    /** The same without the slowdown (what `observe` divides by). */
    val modelMs: Double,
    /** Effective budget after thermal / battery / power-save tightening. */
    val budgetMs: Double,
    /** "cpu" | "accelerator" */
    val unitClass: String,
    /** "measured" | "model" | "macs" */
    val latencySource: String,
    val reason: List<String>
)
