package dev.resflex.demo

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.BatteryManager
import android.os.Build
import android.os.PowerManager
import android.os.Process
import android.os.SystemClock
import androidx.core.content.ContextCompat
import dev.resflex.core.Signals
import dev.resflex.selector.DeviceState

/**
 * The phone's state for the selector, kept current by listeners (no polling in the frame path):
 * thermal status from `PowerManager.addThermalStatusListener` (API 29+; unknown before → the selector's
 * `bad_sensor:thermal` and its conservative level), thermal headroom from `getThermalHeadroom` (API 30+, sampled
 * at most once a second: faster polls return NaN; shown on screen), battery level and charging from the sticky
 * `ACTION_BATTERY_CHANGED`, power-save mode from `isPowerSaveMode` + `ACTION_POWER_SAVE_MODE_CHANGED`, and the CPU
 * share of this app's work other than inference (process CPU time from `Process.getElapsedCpuTime`, less the
 * inference time × its threads reported by [noteInference], per core, over ≥ 1 s windows).
 */
class AndroidSignals(private val context: Context) : Signals {
    private val power = context.getSystemService(PowerManager::class.java)

    @Volatile private var thermal: Int? = null
    @Volatile private var battery: Double? = null
    @Volatile private var charging: Boolean? = null
    @Volatile private var powerSave: Boolean = power.isPowerSaveMode
    @Volatile private var cpuLoad: Double = 0.0
    @Volatile var headroom: Float? = null
        private set

    private var headroomAt = 0L
    private var windowStart = SystemClock.elapsedRealtime()
    private var cpuStart = Process.getElapsedCpuTime()
    private var inferenceCpuMs = 0.0
    private val cores = Runtime.getRuntime().availableProcessors()

    private val thermalListener: Any? = if (Build.VERSION.SDK_INT >= 29) {
        PowerManager.OnThermalStatusChangedListener { status -> thermal = status }
    } else null

    private val batteryReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, intent: Intent) = readBattery(intent)
    }

    private val powerSaveReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, intent: Intent) {
            powerSave = power.isPowerSaveMode
        }
    }

    /** Register the listeners (the sticky battery intent arrives at once). */
    fun start() {
        if (Build.VERSION.SDK_INT >= 29) {
            thermal = power.currentThermalStatus
            power.addThermalStatusListener(ContextCompat.getMainExecutor(context),
                thermalListener as PowerManager.OnThermalStatusChangedListener)
        }
        val sticky = ContextCompat.registerReceiver(context, batteryReceiver,
            IntentFilter(Intent.ACTION_BATTERY_CHANGED), ContextCompat.RECEIVER_NOT_EXPORTED)
        if (sticky != null) readBattery(sticky)
        ContextCompat.registerReceiver(context, powerSaveReceiver,
            IntentFilter(PowerManager.ACTION_POWER_SAVE_MODE_CHANGED), ContextCompat.RECEIVER_NOT_EXPORTED)
        powerSave = power.isPowerSaveMode
    }

    fun stop() {
        if (Build.VERSION.SDK_INT >= 29) {
            power.removeThermalStatusListener(thermalListener as PowerManager.OnThermalStatusChangedListener)
        }
        context.unregisterReceiver(batteryReceiver)
        context.unregisterReceiver(powerSaveReceiver)
    }

    private fun readBattery(intent: Intent) {
        val level = intent.getIntExtra(BatteryManager.EXTRA_LEVEL, -1)
        val scale = intent.getIntExtra(BatteryManager.EXTRA_SCALE, -1)
        battery = if (level >= 0 && scale > 0) level.toDouble() / scale else null
        val status = intent.getIntExtra(BatteryManager.EXTRA_STATUS, -1)
        charging = if (status < 0) null
        else status == BatteryManager.BATTERY_STATUS_CHARGING || status == BatteryManager.BATTERY_STATUS_FULL
    }

    /** The frame loop ran an inference of `ms` on `threads` threads (subtracted from the app's own CPU load). */
    @Synchronized
    fun noteInference(ms: Double, threads: Int) {
        if (ms.isFinite() && ms > 0) inferenceCpuMs += ms * threads
    }

    @Synchronized
    private fun sample() {
        val now = SystemClock.elapsedRealtime()
        val wall = now - windowStart
        if (wall >= 1000) {
            val cpu = Process.getElapsedCpuTime()
            val other = (cpu - cpuStart) - inferenceCpuMs
            cpuLoad = (other / (wall.toDouble() * cores)).coerceIn(0.0, 1.0)
            windowStart = now
            cpuStart = cpu
            inferenceCpuMs = 0.0
        }
        if (Build.VERSION.SDK_INT >= 30 && now - headroomAt >= 1000) {
            headroomAt = now
            val h = power.getThermalHeadroom(10)
            headroom = if (h.isNaN()) headroom else h
        }
    }

    override fun snapshot(): DeviceState {
        sample()
        return DeviceState(battery = battery, charging = charging, powerSave = powerSave, thermal = thermal,
            cpuLoad = cpuLoad, thermalScale = "android")
    }
}
