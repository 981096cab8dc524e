package dev.resflex.core

import dev.resflex.selector.Lut
import java.io.File
import java.nio.file.Files
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** BenchmarkRunner with a fake engine and a fake clock: exact percentiles and the device_profile.json document. */
class BenchmarkTest {
    private val lut = withoutMacs(Synth.lut("phone",
        arrayOf<Any?>(224, "executorch", "fp32", "XNNPACK", "executorch/model_fp32.pte", "forward_224", 300000000L,
            0.76, 20.0),
        arrayOf<Any?>(160, "executorch", "fp32", "XNNPACK", "executorch/model_fp32.pte", "forward_160", 1L,
            0.70, 10.0),
        arrayOf<Any?>(224, "tflite", "fp16", "GPU", "tflite/model_fp16.tflite", "serving_224", 300000000L,
            0.75, 25.0)), 1)

    /**
     * The LUT with point `i`'s MACs set to 0 — which lut.json may not hold (macs ≥ 1), so the runner's
     * "no MACs: no achieved GFLOP/s" branch is reached through a Lut built in code.
     */
    private fun withoutMacs(lut: Lut, i: Int): Lut {
        val points = ArrayList(lut.operatingPoints)
        points[i] = points[i].copy(macs = 0L)
        return Lut(points, lut.latencyModels)
    }

    /** Run times of the first point (ms); the README rule gives p50 3.0, p90 5.9, p99 7.115000000000001. */
    private val times = doubleArrayOf(5.0, 1.0, 4.0, 2.0, 3.0, 2.5, 7.25)

    private class FakeMeter(private val mj: Double?) : EnergyMeter {
        var begun = 0
        override val estimated: Boolean = true
        override fun begin() {
            begun++
        }

        override fun end(): Double? = mj
    }

    private val facts = linkedMapOf("platform" to "android", "model" to "Pixel 8", "soc" to "Tensor G3",
        "os" to "Android 14 (API 34)", "executorch" to "1.0.1", "litert" to "1.4.0", "app" to "resflex-demo 0.1")

    private fun keys(o: JSONObject): Set<String> {
        val out = HashSet<String>()
        val it = o.keys()
        while (it.hasNext()) out.add(it.next())
        return out
    }

    @Test
    fun percentilesFollowTheReadmeRule() {
        assertEquals(3.0, BenchmarkRunner.percentile(times, 50.0), 0.0)
        assertEquals(5.9, BenchmarkRunner.percentile(times, 90.0), 0.0)
        assertEquals(7.115000000000001, BenchmarkRunner.percentile(times, 99.0), 0.0)
        assertEquals(4.0, BenchmarkRunner.percentile(doubleArrayOf(4.0), 99.0), 0.0)
        assertEquals(1.5, BenchmarkRunner.percentile(doubleArrayOf(2.0, 1.0), 50.0), 0.0)
    }

    @Test
    fun profileDocumentHasTheReadmeStructureAndExactNumbers() {
        val engine = FakeEngine(5, failLoad = mapOf("serving_224@GPU" to "GPU delegate not supported on this device"))
        val clock = ScriptedClock()
        for (t in times) clock.push(0.0, t)
        for (i in 0 until times.size) clock.push(10.0, 12.0)
        val meter = FakeMeter(70.0)
        val done = ArrayList<Int>()
        val runner = BenchmarkRunner(Synth.bundle(lut, 5, 3), engine, clock, meter, warmup = 2, runs = times.size) {
            n, all, _ -> done.add(n * 10 + all) }
        val profile = runner.run("android-pixel-8", facts)
        assertEquals(0, clock.remaining())
        assertEquals(listOf(13, 23, 33), done)
        assertEquals(2 * (2 + times.size), engine.ran.size)
        assertEquals(2, meter.begun)
        val doc = profile.toJson()
        assertEquals(setOf("kind", "schema_version", "device_id", "facts", "checkpoint_sha256", "measurements",
            "failures"), keys(doc))
        assertEquals("resflex.device_profile", doc.getString("kind"))
        assertEquals("1.0", doc.getString("schema_version"))
        assertEquals("android-pixel-8", doc.getString("device_id"))
        assertEquals("Tensor G3", doc.getJSONObject("facts").getString("soc"))
        assertEquals("c".repeat(64), doc.getString("checkpoint_sha256"))
        val ms = doc.getJSONArray("measurements")
        assertEquals(2, ms.length())
        val m = ms.getJSONObject(0)
        assertEquals(setOf("resolution", "backend", "precision", "compute_unit", "stage_scales", "entry", "latency",
            "energy_estimated"), keys(m))
        assertEquals(224, m.getInt("resolution"))
        assertEquals("executorch", m.getString("backend"))
        assertEquals("XNNPACK", m.getString("compute_unit"))
        assertEquals("forward_224", m.getString("entry"))
        assertTrue(m.isNull("stage_scales"))
        assertTrue(m.getBoolean("energy_estimated"))
        val lat = m.getJSONObject("latency")
        assertEquals(setOf("runtime", "threads", "runs", "p50_ms", "p90_ms", "p99_ms", "peak_memory_mb", "gflops",
            "energy_mj"), keys(lat))
        assertEquals("executorch", lat.getString("runtime"))
        assertEquals(4, lat.getInt("threads"))
        assertEquals(7, lat.getInt("runs"))
        assertEquals(3.0, lat.getDouble("p50_ms"), 0.0)
        assertEquals(5.9, lat.getDouble("p90_ms"), 0.0)
        assertEquals(7.115000000000001, lat.getDouble("p99_ms"), 0.0)
        assertEquals(200.0, lat.getDouble("gflops"), 0.0) // 2 · 300 M MACs / 3 ms
        assertEquals(10.0, lat.getDouble("energy_mj"), 0.0) // 70 mJ over 7 runs
        assertTrue(lat.isNull("peak_memory_mb"))
        val m2 = ms.getJSONObject(1).getJSONObject("latency")
        assertEquals(2.0, m2.getDouble("p50_ms"), 0.0)
        assertEquals(2.0, m2.getDouble("p99_ms"), 0.0)
        assertTrue(m2.isNull("gflops")) // no MACs: no achieved GFLOP/s (the schema wants > 0 or null)
        val fs = doc.getJSONArray("failures")
        assertEquals(1, fs.length())
        val f = fs.getJSONObject(0)
        assertEquals(setOf("resolution", "backend", "precision", "compute_unit", "stage_scales", "entry", "error"),
            keys(f))
        assertEquals("GPU", f.getString("compute_unit"))
        assertEquals("serving_224", f.getString("entry"))
        assertEquals("GPU delegate not supported on this device", f.getString("error"))
    }

    @Test
    fun runFailuresAndBadTimesBecomeFailuresNeverNaN() {
        val engine = FakeEngine(5, failRun = setOf("forward_160@XNNPACK"))
        val clock = ScriptedClock()
        for (i in 0 until 3) clock.push(0.0, Double.NaN) // first point: NaN latency
        for (i in 0 until 3) clock.push(0.0, 0.0) // third point: zero latency
        val runner = BenchmarkRunner(Synth.bundle(lut, 5, 3), engine, clock, FakeMeter(Double.POSITIVE_INFINITY),
            warmup = 0, runs = 3)
        val profile = runner.run("phone", facts)
        assertEquals(0, profile.measurements.size)
        assertEquals(3, profile.failures.size)
        assertTrue(profile.failures[0].error.contains("not a finite number"))
        assertTrue(profile.failures[1].error.contains("fake run failure"))
        val text = profile.toJson().toString()
        assertFalse(text.contains(":NaN"))
        assertFalse(text.contains(":Infinity"))
        assertFalse(text.contains(":-Infinity"))
    }

    @Test
    fun unmeasurableEnergyIsNullAndNotEstimated() {
        val clock = ScriptedClock()
        for (i in 0 until 6) clock.push(0.0, 1.0)
        val bundle = Synth.bundle(lut, 5, 3)
        val runner = BenchmarkRunner(bundle, FakeEngine(5), clock, FakeMeter(null), warmup = 0, runs = 3)
        val doc = runner.run("phone", facts, bundle.points.subList(0, 2)).toJson()
        val m = doc.getJSONArray("measurements").getJSONObject(0)
        assertTrue(m.getJSONObject("latency").isNull("energy_mj"))
        assertFalse(m.getBoolean("energy_estimated"))
    }

    @Test
    fun writeIsAtomicAndReadsBack() {
        val dir = Files.createTempDirectory("resflex-profile").toFile()
        try {
            val clock = ScriptedClock()
            for (i in 0 until 6) clock.push(0.0, 1.5)
            val bundle = Synth.bundle(lut, 5, 3)
            val profile = BenchmarkRunner(bundle, FakeEngine(5), clock, null, 1, 3)
                .run("phone", facts, bundle.points.subList(0, 2))
            val file = File(dir, DeviceProfile.FILE)
            file.writeText("old")
            profile.write(file)
            val back = JSONObject(file.readText())
            assertEquals(1.5, back.getJSONArray("measurements").getJSONObject(1).getJSONObject("latency")
                .getDouble("p90_ms"), 0.0)
            assertEquals(listOf(DeviceProfile.FILE), dir.list()!!.toList())
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun deviceIdMustBeALutKey() {
        try {
            DeviceProfile("Pixel 8", facts, "c", emptyList(), emptyList())
            fail("accepted a device id with a capital and a space")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("device_id"))
        }
        assertEquals("android-pixel-8-pro", DeviceProfile.deviceIdOf("android Pixel 8 Pro"))
        assertEquals("android-phone", DeviceProfile.deviceIdOf("  "))
    }

    /**
     * With RESFLEX_PORT_OUT set, writes $RESFLEX_PORT_OUT/device_profile_kotlin.json (device "kotlin-fake-phone")
     * for the executorch and tflite points of the LUT in RESFLEX_PORT_LUT (else this test's LUT), with
     * checkpoint_sha256 from RESFLEX_PORT_CHECKPOINT_SHA256: CI imports it with `resflex profile --import`.
     */
    @Test
    fun exportForThePythonImport() {
        val out = System.getenv("RESFLEX_PORT_OUT")
        val lutPath = System.getenv("RESFLEX_PORT_LUT")
        val checkpoint = System.getenv("RESFLEX_PORT_CHECKPOINT_SHA256") ?: "c".repeat(64)
        val source = if (lutPath.isNullOrEmpty()) lut else Lut.read(File(lutPath))
        val manifest = Manifest.fromJson(Synth.manifestFor(source, 5, checkpoint, 2), "synthetic manifest")
        val bundle = ResflexBundle.of(manifest, source, null, setOf("executorch", "tflite"))
        val clock = object : Clock {
            var n = 0L
            var t = 0.0
            // Readings in pairs: start, then start + a latency that grows with the point and jitters a little.
            override fun nowMs(): Double {
                n++
                if (n % 2L == 1L) return 0.0
                return t
            }
        }
        val engine = object : InferenceEngine {
            override fun load(bundle: ResflexBundle, points: List<BundlePoint>) = emptyMap<BundlePoint, String>()
            override fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray {
                val base = Math.max(point.point.macs / 5e7, 0.5) * (if (point.point.computeUnit == "GPU") 0.6 else 1.0)
                clock.t = base * (1.0 + 0.01 * (clock.n / 2 % 7))
                return FloatArray(5)
            }
            override fun threads(point: BundlePoint): Int = if (point.point.computeUnit == "GPU") 1 else 4
            override fun close() {}
        }
        val profile = BenchmarkRunner(bundle, engine, clock, null, 2, 20).run("kotlin-fake-phone",
            linkedMapOf("platform" to "android", "model" to "JVM fake phone", "soc" to "none",
                "os" to "JVM " + System.getProperty("java.version"), "executorch" to "fake", "litert" to "fake",
                "app" to "resflex android_demo core tests"))
        assertEquals(bundle.points.size, profile.measurements.size)
        for (m in profile.measurements) assertTrue(m.p50Ms <= m.p90Ms && m.p90Ms <= m.p99Ms && m.p50Ms > 0)
        if (!out.isNullOrEmpty()) {
            val file = File(out, "device_profile_kotlin.json")
            profile.write(file)
            println("BenchmarkTest: wrote $file (${profile.measurements.size} measurements)")
        }
    }
}
