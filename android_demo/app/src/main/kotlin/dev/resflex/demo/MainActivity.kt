package dev.resflex.demo

import android.Manifest
import android.content.Intent
import android.content.pm.PackageManager
import android.graphics.Color
import android.os.Bundle
import android.util.Log
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import androidx.core.content.FileProvider
import dev.resflex.core.BenchmarkRunner
import dev.resflex.core.BundleError
import dev.resflex.core.Clock
import dev.resflex.core.DeviceProfile
import dev.resflex.core.Engines
import dev.resflex.core.Exclusion
import dev.resflex.core.FrameLoop
import dev.resflex.core.FrameResult
import dev.resflex.core.MeasurementFailure
import dev.resflex.core.Plane
import dev.resflex.core.Preprocess
import dev.resflex.core.ResflexBundle
import java.io.File
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One screen: camera preview, top-3 labels, the operating point the selector chose, latency against the budget,
 * thermal and battery state, the reason codes, a resolution pin, and "Benchmark this phone". All model work runs
 * on one background executor (bundle install, loading, frames, benchmark); the UI thread only shows results.
 */
class MainActivity : ComponentActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private lateinit var signals: AndroidSignals
    private lateinit var previewView: PreviewView
    private lateinit var status: TextView
    private lateinit var labels: TextView
    private lateinit var chosen: TextView
    private lateinit var latency: TextView
    private lateinit var device: TextView
    private lateinit var reasons: TextView
    private lateinit var pin: Spinner
    private lateinit var benchmark: Button

    // Touched on the worker thread only (set once before the camera starts).
    private var bundle: ResflexBundle? = null
    private var engines: Engines? = null
    @Volatile private var loop: FrameLoop? = null
    @Volatile private var benchmarking = false
    // UI thread only: the camera use case that feeds frames to the worker.
    private var analysis: ImageAnalysis? = null

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera()
        else showStatus("Camera permission denied: resflex classifies camera frames and cannot run without it. " +
            "Allow the camera in Settings → Apps → resflex → Permissions, then reopen the app.", error = true)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        buildUi()
        signals = AndroidSignals(this)
        signals.start()
        showStatus("Verifying the bundle…")
        worker.execute { setUp() }
    }

    override fun onDestroy() {
        super.onDestroy()
        signals.stop()
        // Stop the camera feeding the worker first: frames must not be handed to a shut-down executor.
        analysis?.clearAnalyzer()
        analysis = null
        worker.execute { engines?.close() }
        worker.shutdown()
    }

    private fun buildUi() {
        val column = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        previewView = PreviewView(this)
        column.addView(previewView, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
        val info = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL; setPadding(24, 16, 24, 16) }
        fun text(size: Float): TextView = TextView(this).apply { textSize = size }.also { info.addView(it) }
        status = text(14f)
        labels = text(20f)
        chosen = text(16f)
        latency = text(16f)
        device = text(13f)
        reasons = text(12f)
        val row = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
        row.addView(TextView(this).apply { text = "Resolution: " })
        pin = Spinner(this)
        pin.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, listOf("auto"))
        row.addView(pin)
        benchmark = Button(this).apply { text = "Benchmark this phone"; isEnabled = false }
        benchmark.setOnClickListener { runBenchmark() }
        row.addView(benchmark)
        info.addView(row)
        column.addView(ScrollView(this).apply { addView(info) },
            LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
        setContentView(column)
    }

    private fun showStatus(message: String, error: Boolean = false) = runOnUiThread {
        status.text = message
        status.setTextColor(if (error) Color.RED else Color.DKGRAY)
    }

    /** Worker thread: copy + verify the bundle, load every entry, then ask for the camera. */
    private fun setUp() {
        try {
            val b = BundleInstaller.install(this)
            val e = Engines(mapOf("executorch" to ExecuTorchEngine(), "tflite" to LiteRtEngine()))
            val l = FrameLoop(b, DeviceFacts.deviceId(), e, signals, Clock.SYSTEM, log = { Log.w(TAG, it) })
            val excluded = l.start()
            bundle = b
            engines = e
            loop = l
            runOnUiThread { ready(l, excluded) }
        } catch (e: BundleError) {
            Log.e(TAG, "bundle", e)
            showStatus("Bundle error: ${e.message}\nCopy a bundle with android_demo/copy_bundle.sh and rebuild.", true)
        } catch (e: Exception) {
            Log.e(TAG, "set-up", e)
            showStatus("Could not start: ${e.message ?: e}", true)
        }
    }

    private fun ready(l: FrameLoop, excluded: List<Exclusion>) {
        val points = l.candidates().size
        showStatus("$points operating points on ${DeviceFacts.deviceId()}" +
            (if (excluded.isEmpty()) "" else "; removed: " + excluded.joinToString("; ") {
                "${it.point.resolution} ${it.point.backend} ${it.point.computeUnit}: ${it.reason}" }),
            error = points == 0)
        val choices = ArrayList<String>()
        choices.add("auto")
        for (r in l.resolutions()) choices.add("$r px")
        pin.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, choices)
        pin.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                val resolution = if (position == 0) null else l.resolutions().getOrNull(position - 1)
                try {
                    l.pin(resolution)
                } catch (e: IllegalArgumentException) {
                    showStatus(e.message ?: "cannot pin", true)
                }
            }

            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
        benchmark.isEnabled = points > 0
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            if (isDestroyed) return@addListener  // the worker is shut down: never attach an analyzer to it
            try {
                val provider = future.get()
                val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
                val analysis = ImageAnalysis.Builder()
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)
                    .build()
                analysis.setAnalyzer(worker) { image -> analyze(image) }
                this.analysis = analysis
                provider.unbindAll()
                provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
            } catch (e: Exception) {
                Log.e(TAG, "camera", e)
                showStatus("Camera could not start: ${e.message ?: e}", true)
            }
        }, ContextCompat.getMainExecutor(this))
    }

    /** Worker thread, one frame at a time (CameraX keeps only the latest frame while this runs). */
    private fun analyze(image: ImageProxy) {
        try {
            val l = loop ?: return
            if (benchmarking) return
            val p = image.planes
            val rgb = Preprocess.fromYuv420(Plane(p[0].buffer, p[0].rowStride, p[0].pixelStride),
                Plane(p[1].buffer, p[1].rowStride, p[1].pixelStride),
                Plane(p[2].buffer, p[2].rowStride, p[2].pixelStride),
                image.width, image.height, image.imageInfo.rotationDegrees)
            val r = l.process(rgb)
            val ms = r.latencyMs
            val point = r.point
            if (ms != null && point != null) signals.noteInference(ms, engines?.threads(point) ?: 1)
            runOnUiThread { show(r) }
        } catch (e: Exception) {
            Log.e(TAG, "frame", e)
            showStatus("Frame failed: ${e.message ?: e}", true)
        } finally {
            image.close()
        }
    }

    private fun show(r: FrameResult) {
        if (r.error != null) showStatus(r.error!!, error = true)
        labels.text = r.top.joinToString("\n") { String.format(Locale.US, "%-18s %5.1f %%", it.name, it.score * 100) }
        val p = r.point?.point
        chosen.text = if (p == null) "—" else "${p.resolution} px · ${p.backend} · ${p.precision} · ${p.computeUnit}" +
            (if (r.pinnedResolution != null) " (pinned)" else "")
        val ms = r.latencyMs
        val budget = r.budgetMs
        latency.text = if (ms == null || budget == null) "" else String.format(Locale.US,
            "%.1f ms / budget %.1f ms (predicted %.1f ms)", ms, budget, r.decision?.predictedMs ?: Double.NaN)
        latency.setTextColor(if (r.overBudget) Color.RED else Color.rgb(0, 120, 0))
        val s = r.state
        val headroom = signals.headroom
        device.text = String.format(Locale.US, "thermal %s%s · battery %s%s · power save %s · other CPU %s",
            s.thermal ?: "unknown", if (headroom != null) String.format(Locale.US, " (headroom %.2f)", headroom) else "",
            (s.battery as? Double)?.let { String.format(Locale.US, "%.0f %%", it * 100) } ?: "unknown",
            if (s.charging == true) " charging" else "", s.powerSave,
            (s.cpuLoad as? Double)?.let { String.format(Locale.US, "%.0f %%", it * 100) } ?: "?")
        reasons.text = r.reason.joinToString(" ")
    }

    private fun runBenchmark() {
        val l = loop ?: return
        val b = bundle ?: return
        val e = engines ?: return
        benchmark.isEnabled = false
        benchmarking = true
        showStatus("Benchmark: starting (keep the phone still and unplugged for energy estimates)…")
        worker.execute {
            try {
                val runner = BenchmarkRunner(b, e, Clock.SYSTEM, BatteryEnergyMeter(this), 5, 50) { done, all, p ->
                    showStatus("Benchmark: $done / $all · ${p.label()}")
                }
                var profile = runner.run(DeviceFacts.deviceId(), DeviceFacts.facts(this), l.candidates(), loaded = true)
                val failures = ArrayList(profile.failures)
                for (x in l.exclusions()) failures.add(MeasurementFailure(x.point, x.reason))
                profile = profile.copy(failures = failures)
                val file = File(File(filesDir, "profiles"), DeviceProfile.FILE)
                profile.write(file)
                showStatus("Benchmark: ${profile.measurements.size} points measured, ${failures.size} failed → $file")
                runOnUiThread { share(file) }
            } catch (x: Exception) {
                Log.e(TAG, "benchmark", x)
                showStatus("Benchmark failed: ${x.message ?: x}", true)
            } finally {
                benchmarking = false
                runOnUiThread { benchmark.isEnabled = true }
            }
        }
    }

    private fun share(file: File) {
        val uri = FileProvider.getUriForFile(this, "$packageName.files", file)
        val send = Intent(Intent.ACTION_SEND).apply {
            type = "application/json"
            putExtra(Intent.EXTRA_STREAM, uri)
            putExtra(Intent.EXTRA_SUBJECT, "resflex device_profile.json (${DeviceFacts.deviceId()})")
            addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION)
        }
        startActivity(Intent.createChooser(send, "Share device_profile.json"))
    }

    companion object {
        private const val TAG = "resflex"
    }
}
