package dev.resflex.core

import dev.resflex.selector.DeviceState
import dev.resflex.selector.Policy
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** FrameLoop behaviour beyond the golden replay: failures, pinning, preprocessing handed to the engine, top-k. */
class FrameLoopTest {
    private val device = "phone"

    // 224/160 on ExecuTorch (CPU), 224 on TFLite GPU (accelerator); measured latencies on `device`.
    private val lut = Synth.lut(device,
        arrayOf<Any?>(224, "executorch", "fp32", "XNNPACK", "executorch/model_fp32.pte", "forward_224", 300000000L,
            0.76, 20.0),
        arrayOf<Any?>(160, "executorch", "fp32", "XNNPACK", "executorch/model_fp32.pte", "forward_160", 150000000L,
            0.70, 10.0),
        arrayOf<Any?>(224, "tflite", "fp16", "GPU", "tflite/model_fp16.tflite", "serving_224", 300000000L,
            0.75, 25.0))

    private fun loop(engine: FakeEngine, clock: ScriptedClock, logs: MutableList<String> = ArrayList(),
                     budget: Double = 33.0): FrameLoop =
        FrameLoop(Synth.bundle(lut, numClasses = 5, crop = 3), device, engine, ScriptedSignals(), clock,
            Policy(latencyBudgetMs = budget), 3) { logs.add(it) }

    @Test
    fun runsTheChosenPointAndFeedsBackItsLatency() {
        val engine = FakeEngine(5)
        val clock = ScriptedClock()
        val loop = loop(engine, clock)
        clock.push(100.0, 118.5)
        val r = loop.process(Synth.frame())
        assertNull(r.error)
        assertEquals(224, r.point!!.point.resolution)
        assertEquals("executorch", r.point!!.point.backend)
        assertEquals(18.5, r.latencyMs!!, 0.0)
        assertEquals(33.0, r.budgetMs!!, 0.0)
        assertFalse(r.overBudget)
        assertEquals(listOf("initial", "fits_budget"), r.reason)
        assertEquals(listOf(1L, 3L, 3L, 3L), engine.shapes[0])
        assertEquals(27, engine.inputs[0].size)
        assertEquals(1, engine.loads)
        // top-3 from the softmax: class 224 % 5 = 4 has logit 2, the others 0.
        assertEquals(3, r.top.size)
        assertEquals(4, r.top[0].index)
        assertEquals("class_4", r.top[0].name)
        assertEquals(Math.exp(2.0) / (Math.exp(2.0) + 4), r.top[0].score, 1e-12)
        assertEquals(0, r.top[1].index)
        assertEquals(1, r.top[2].index)
    }

    @Test
    fun overBudgetIsReported() {
        val clock = ScriptedClock()
        val loop = loop(FakeEngine(5), clock)
        clock.push(0.0, 40.0)
        assertTrue(loop.process(Synth.frame()).overBudget)
    }

    @Test
    fun pointThatFailsToLoadIsRemovedAndTheOthersWork() {
        val logs = ArrayList<String>()
        val engine = FakeEngine(5, failLoad = mapOf("forward_224@XNNPACK" to "method forward_224 not in program"))
        val clock = ScriptedClock()
        val loop = loop(engine, clock, logs)
        val excluded = loop.start()
        assertEquals(1, excluded.size)
        assertEquals(224, excluded[0].point.resolution)
        assertTrue(excluded[0].reason.contains("forward_224 not in program"))
        assertTrue(logs[0].contains("removed 224 executorch fp32 XNNPACK"))
        assertEquals(2, loop.candidates().size)
        clock.push(0.0, 24.0)
        val r = loop.process(Synth.frame())
        assertNull(r.error)
        assertEquals("tflite", r.point!!.point.backend) // the best remaining top-1 that fits
        assertEquals(listOf("NHWC"), listOf(r.point!!.layout))
        assertEquals(listOf(1L, 3L, 3L, 3L), engine.shapes[0])
    }

    @Test
    fun pointThatFailsToRunIsRemovedFromTheNextFrameOn() {
        val logs = ArrayList<String>()
        val engine = FakeEngine(5, failRun = setOf("forward_224@XNNPACK"))
        val clock = ScriptedClock()
        val loop = loop(engine, clock, logs)
        clock.push(0.0)
        val first = loop.process(Synth.frame())
        assertNotNull(first.error)
        assertTrue(first.error!!.contains("run failed"))
        assertTrue(first.top.isEmpty())
        assertEquals(1, loop.exclusions().size)
        assertTrue(logs[0].contains("fake run failure"))
        clock.push(0.0, 24.0)
        clock.push(0.0, 24.0)
        val second = loop.process(Synth.frame())
        assertNull(second.error)
        assertEquals("tflite", second.point!!.point.backend)
        assertNull(loop.process(Synth.frame()).error)
    }

    @Test
    fun wrongNumberOfLogitsRemovesThePoint() {
        val clock = ScriptedClock()
        val loop = loop(FakeEngine(7), clock)
        clock.push(0.0, 10.0)
        val r = loop.process(Synth.frame())
        assertTrue(r.error!!.contains("expected num_classes = 5"))
    }

    @Test
    fun nothingRunnableGivesAnErrorResultNotACrash() {
        val engine = FakeEngine(5, failLoad = mapOf("forward_224@XNNPACK" to "a", "forward_160@XNNPACK" to "b",
            "serving_224@GPU" to "GPU delegate not supported on this device"))
        val loop = loop(engine, ScriptedClock())
        assertEquals(3, loop.start().size)
        val r = loop.process(Synth.frame())
        assertNull(r.point)
        assertTrue(r.error!!.contains("GPU delegate not supported"))
        assertTrue(engine.ran.isEmpty())
    }

    @Test
    fun pinningARestrictsTheChoiceToThatResolution() {
        val engine = FakeEngine(5)
        val clock = ScriptedClock()
        val loop = loop(engine, clock)
        loop.start()
        assertEquals(listOf(160, 224), loop.resolutions())
        loop.pin(160)
        assertEquals(160, loop.pinnedResolution)
        for (i in 0 until 3) {
            clock.push(0.0, 9.0)
            val r = loop.process(Synth.frame())
            assertEquals(160, r.point!!.point.resolution)
            assertEquals(160, r.pinnedResolution)
            assertTrue(r.reason.contains("pinned_resolution"))
        }
        loop.pin(null)
        clock.push(0.0, 19.0)
        val free = loop.process(Synth.frame())
        assertEquals(224, free.point!!.point.resolution)
        assertFalse(free.reason.contains("pinned_resolution"))
        try {
            loop.pin(96)
            fail("pinned a resolution with no point")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("96"))
        }
    }

    @Test
    fun pinnedResolutionWhoseLastPointFailsIsReleased() {
        val engine = FakeEngine(5, failRun = setOf("forward_160@XNNPACK"))
        val clock = ScriptedClock()
        val loop = loop(engine, clock)
        loop.start()
        loop.pin(160)
        clock.push(0.0)
        assertNotNull(loop.process(Synth.frame()).error)
        clock.push(0.0, 19.0)
        val r = loop.process(Synth.frame())
        assertNull(r.error)
        assertNull(r.pinnedResolution)
        assertEquals(224, r.point!!.point.resolution)
    }

    @Test
    fun thermalStateMovesWorkAsTheSelectorSays() {
        val engine = FakeEngine(5)
        val clock = ScriptedClock()
        val signals = ScriptedSignals()
        val loop = FrameLoop(Synth.bundle(lut, 5, 3), device, engine, signals, clock, Policy(latencyBudgetMs = 22.0))
        clock.push(0.0, 20.0)
        assertEquals("executorch", loop.process(Synth.frame()).point!!.point.backend)
        // Hot phone: budget 22 × 0.5 = 11 and the CPU slowed 1.6×: nothing fits any more.
        signals.state = DeviceState(thermal = 3)
        clock.push(0.0, 16.0)
        val hot = loop.process(Synth.frame())
        assertTrue(hot.reason.contains("thermal_tightened"))
        assertTrue(hot.reason.contains("thermal_cpu_slowdown"))
        assertEquals(11.0, hot.budgetMs!!, 1e-12)
    }

    @Test
    fun topKHandlesNaNAndShortLists() {
        val labels = FrameLoop.topK(floatArrayOf(Float.NaN, 1f), 3, listOf("a"))
        assertEquals(2, labels.size)
        assertEquals(1, labels[0].index)
        assertEquals("class 1", labels[0].name)
        assertEquals(1.0, labels[0].score, 0.0)
        assertEquals(0.0, labels[1].score, 0.0)
    }
}
