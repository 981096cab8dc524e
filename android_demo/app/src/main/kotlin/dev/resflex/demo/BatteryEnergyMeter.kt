package dev.resflex.demo

import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.BatteryManager
import android.os.SystemClock
import dev.resflex.core.EnergyMeter

/**
 * Energy over a benchmark run, estimated from the battery: `BATTERY_PROPERTY_CURRENT_NOW` (µA) × the battery
 * voltage (mV, sticky `ACTION_BATTERY_CHANGED`) sampled every 50 ms and integrated. It is the whole phone's draw
 * (screen included), so the result is marked `energy_estimated`; none is given while charging or when the phone
 * does not report its current.
 */
class BatteryEnergyMeter(private val context: Context) : EnergyMeter {
    private val battery = context.getSystemService(BatteryManager::class.java)
    override val estimated: Boolean = true

    @Volatile private var running = false
    private var thread: Thread? = null
    private var millijoules = 0.0
    private var valid = true

    private fun voltageMv(): Int {
        val sticky = context.registerReceiver(null, IntentFilter(Intent.ACTION_BATTERY_CHANGED))
        return sticky?.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1) ?: -1
    }

    override fun begin() {
        millijoules = 0.0
        valid = !battery.isCharging && voltageMv() > 0
        running = true
        val mv = voltageMv().toDouble()
        thread = Thread {
            var last = SystemClock.elapsedRealtimeNanos()
            while (running) {
                SystemClock.sleep(50)
                val ua = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CURRENT_NOW)
                val now = SystemClock.elapsedRealtimeNanos()
                if (ua == Long.MIN_VALUE || ua == 0L) valid = false
                // µA × mV = nW; ÷ 1e6 → mW; × seconds → mJ. Vendors differ in the sign: take the magnitude.
                millijoules += Math.abs(ua.toDouble()) * mv / 1e6 * ((now - last) / 1e9)
                last = now
            }
        }.also { it.start() }
    }

    override fun end(): Double? {
        running = false
        thread?.join()
        thread = null
        return if (valid && millijoules > 0) millijoules else null
    }
}
