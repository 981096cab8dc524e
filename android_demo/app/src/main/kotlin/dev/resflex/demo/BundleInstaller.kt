package dev.resflex.demo

import android.content.Context
import android.content.res.AssetManager
import dev.resflex.core.ResflexBundle
import java.io.File

/**
 * The bundle ships in the APK's assets (`assets/bundle/`, see android_demo/copy_bundle.sh). ExecuTorch and LiteRT
 * need real files, so it is copied once to app storage (again after each APK update), and then opened with
 * [ResflexBundle.open], which checks every artifact's sha256 against manifest.json before anything is loaded.
 */
object BundleInstaller {
    /** Backends this app runs; other artifacts in the bundle are neither copied nor required. */
    val BACKENDS = setOf("executorch", "tflite")

    fun install(context: Context): ResflexBundle {
        val target = File(context.filesDir, "bundle")
        val stamp = File(context.filesDir, "bundle.installed-from")
        @Suppress("DEPRECATION")
        val apk = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime.toString()
        if (!(stamp.isFile && stamp.readText() == apk && target.isDirectory)) {
            target.deleteRecursively()
            val tmp = File(context.filesDir, "bundle.tmp")
            tmp.deleteRecursively()
            copy(context.assets, "bundle", tmp)
            if (!tmp.renameTo(target)) throw IllegalStateException("cannot move $tmp to $target")
            stamp.writeText(apk)
        }
        return ResflexBundle.open(target, BACKENDS)
    }

    private fun copy(assets: AssetManager, path: String, dest: File) {
        val children = assets.list(path).orEmpty()
        if (children.isEmpty()) {
            dest.parentFile?.mkdirs()
            assets.open(path).use { input -> dest.outputStream().use { input.copyTo(it, 1 shl 16) } }
            return
        }
        dest.mkdirs()
        for (name in children) copy(assets, "$path/$name", File(dest, name))
    }
}
