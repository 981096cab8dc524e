package dev.resflex.demo

import dev.resflex.core.BundlePoint
import dev.resflex.core.InferenceEngine
import dev.resflex.core.ResflexBundle
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate

/**
 * LiteRT `.tflite` artifacts: one [Interpreter] per file × compute unit — "CPU" (XNNPACK, the CPU default) or
 * "GPU" (the GPU delegate, where [CompatibilityList] says this phone supports it) — created at start; each entry is
 * a signature run with `runSignature`. NNAPI is not used (deprecated from Android 15): such points fail to load.
 * Inputs/outputs of integer-quantised signatures are (de)quantised with the tensor's scale and zero point.
 */
class LiteRtEngine(private val threads: Int = ExecuTorchEngine.defaultThreads()) : InferenceEngine {
    private val interpreters = HashMap<String, Interpreter>()
    private val delegates = ArrayList<GpuDelegate>()
    private val buffers = HashMap<String, Pair<ByteBuffer, ByteBuffer>>()

    private fun key(p: BundlePoint) = "${p.artifact.file}@${p.point.computeUnit}"

    override fun load(bundle: ResflexBundle, points: List<BundlePoint>): Map<BundlePoint, String> {
        val failed = LinkedHashMap<BundlePoint, String>()
        for ((key, group) in points.groupBy { key(it) }) {
            val unit = group[0].point.computeUnit
            val interpreter = interpreters[key] ?: try {
                val options = Interpreter.Options()
                when (unit) {
                    "CPU" -> options.setNumThreads(threads)
                    "GPU" -> {
                        // CompatibilityList holds native resources: close it as soon as the options are read.
                        val gpuOptions = CompatibilityList().use {
                            if (it.isDelegateSupportedOnThisDevice) it.bestOptionsForThisDevice else null
                        }
                        if (gpuOptions == null) {
                            for (p in group) failed[p] = "GPU delegate not supported on this device"
                            continue
                        }
                        val delegate = GpuDelegate(gpuOptions)
                        delegates.add(delegate)
                        options.addDelegate(delegate)
                    }
                    else -> {
                        for (p in group) failed[p] = "compute unit $unit is not used by this app (CPU and GPU only)"
                        continue
                    }
                }
                Interpreter(bundle.file(group[0].artifact), options)
            } catch (e: Throwable) {
                for (p in group) failed[p] = "LiteRT $unit interpreter for ${group[0].artifact.file} failed: ${e.message ?: e}"
                continue
            }
            interpreters[key] = interpreter
            val signatures = interpreter.signatureKeys.toList()
            for (p in group) {
                if (!signatures.contains(p.entry.name)) {
                    failed[p] = "signature ${p.entry.name} is not in ${p.artifact.file} (it has $signatures)"
                } else if (!interpreter.getSignatureInputs(p.entry.name).contains(p.entry.inputName) ||
                    !interpreter.getSignatureOutputs(p.entry.name).contains(p.entry.outputName)) {
                    failed[p] = "signature ${p.entry.name} has no input ${p.entry.inputName} / output ${p.entry.outputName}"
                }
            }
        }
        return failed
    }

    override fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray {
        val k = key(point)
        val interpreter = interpreters[k] ?: throw IllegalStateException("$k is not loaded")
        val sig = point.entry.name
        val inTensor = interpreter.getInputTensorFromSignature(point.entry.inputName, sig)
        val outTensor = interpreter.getOutputTensorFromSignature(point.entry.outputName, sig)
        val bufKey = "$k/$sig"
        val (inBuf, outBuf) = buffers.getOrPut(bufKey) {
            Pair(ByteBuffer.allocateDirect(inTensor.numBytes()).order(ByteOrder.nativeOrder()),
                ByteBuffer.allocateDirect(outTensor.numBytes()).order(ByteOrder.nativeOrder()))
        }
        inBuf.rewind()
        when (inTensor.dataType()) {
            DataType.FLOAT32 -> inBuf.asFloatBuffer().put(input)
            DataType.INT8, DataType.UINT8 -> {
                val q = inTensor.quantizationParams()
                val lo = if (inTensor.dataType() == DataType.INT8) -128 else 0
                for (v in input) {
                    val x = Math.round(v / q.scale + q.zeroPoint).coerceIn(lo, lo + 255)
                    inBuf.put(x.toByte())
                }
            }
            else -> throw IllegalStateException("$sig: input type ${inTensor.dataType()} is not supported")
        }
        inBuf.rewind()
        outBuf.rewind()
        interpreter.runSignature(mapOf(point.entry.inputName to inBuf), mapOf(point.entry.outputName to outBuf), sig)
        outBuf.rewind()
        val n = outTensor.numElements()
        val out = FloatArray(n)
        when (outTensor.dataType()) {
            DataType.FLOAT32 -> outBuf.asFloatBuffer().get(out)
            DataType.INT8, DataType.UINT8 -> {
                val q = outTensor.quantizationParams()
                val signed = outTensor.dataType() == DataType.INT8
                for (i in 0 until n) {
                    val b = outBuf.get().toInt()
                    out[i] = ((if (signed) b else b and 0xff) - q.zeroPoint) * q.scale
                }
            }
            else -> throw IllegalStateException("$sig: output type ${outTensor.dataType()} is not supported")
        }
        return out
    }

    override fun threads(point: BundlePoint): Int = if (point.point.computeUnit == "GPU") 1 else threads

    override fun close() {
        for (i in interpreters.values) i.close()
        for (d in delegates) d.close()
        interpreters.clear()
        delegates.clear()
        buffers.clear()
    }
}
