package dev.resflex.demo

import android.content.Context
import android.os.Build
import dev.resflex.core.DeviceProfile

/** What device_profile.json says about this phone, and its device id (the LUT's key). */
object DeviceFacts {
    fun deviceId(): String = DeviceProfile.deviceIdOf("android-${Build.MANUFACTURER}-${Build.MODEL}")

    fun facts(context: Context): Map<String, String> {
        val soc = if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE
        @Suppress("DEPRECATION")
        val app = context.packageManager.getPackageInfo(context.packageName, 0).versionName ?: "?"
        return linkedMapOf(
            "platform" to "android",
            "model" to "${Build.MANUFACTURER} ${Build.MODEL}",
            "soc" to soc,
            "os" to "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            "abi" to (Build.SUPPORTED_ABIS.firstOrNull() ?: "?"),
            "cores" to Runtime.getRuntime().availableProcessors().toString(),
            "executorch" to BuildConfig.EXECUTORCH_VERSION,
            "litert" to BuildConfig.LITERT_VERSION,
            "app" to "resflex-demo $app"
        )
    }
}
