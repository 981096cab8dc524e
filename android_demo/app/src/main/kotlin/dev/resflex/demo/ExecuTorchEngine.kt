package dev.resflex.demo

import dev.resflex.core.BundlePoint
import dev.resflex.core.InferenceEngine
import dev.resflex.core.ResflexBundle
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/**
 * ExecuTorch `.pte` artifacts: one [Module] per file (loaded from the verified copy in app storage, memory-mapped),
 * and every method of the bundle loaded at start, so switching resolution never loads anything. Calls on one
 * Module are serialised by ExecuTorch's own lock.
 */
class ExecuTorchEngine(private val threads: Int = defaultThreads()) : InferenceEngine {
    private val modules = HashMap<String, Module>()

    override fun load(bundle: ResflexBundle, points: List<BundlePoint>): Map<BundlePoint, String> {
        val failed = LinkedHashMap<BundlePoint, String>()
        for ((file, group) in points.groupBy { it.artifact.file }) {
            val module = modules[file] ?: try {
                Module.load(bundle.file(group[0].artifact).absolutePath, Module.LOAD_MODE_MMAP, threads)
            } catch (e: Throwable) {
                for (p in group) failed[p] = "Module.load($file) failed: ${e.message ?: e}"
                continue
            }
            modules[file] = module
            for (p in group) {
                val code = try {
                    module.loadMethod(p.entry.name)
                } catch (e: Throwable) {
                    failed[p] = "loadMethod(${p.entry.name}) failed: ${e.message ?: e}"
                    continue
                }
                if (code != 0) failed[p] = "loadMethod(${p.entry.name}) returned error 0x${Integer.toHexString(code)}"
            }
        }
        return failed
    }

    override fun run(point: BundlePoint, input: FloatArray, shape: LongArray): FloatArray {
        val module = modules[point.artifact.file]
            ?: throw IllegalStateException("${point.artifact.file} is not loaded")
        val outputs = module.execute(point.entry.name, EValue.from(Tensor.fromBlob(input, shape)))
        if (outputs.isEmpty()) throw IllegalStateException("${point.entry.name} returned no output")
        return outputs[0].toTensor().dataAsFloatArray
    }

    override fun threads(point: BundlePoint): Int = threads

    override fun close() {
        for (m in modules.values) m.destroy()
        modules.clear()
    }

    companion object {
        /** Big cores on most phones: half the cores, 2..4. */
        fun defaultThreads(): Int = (Runtime.getRuntime().availableProcessors() / 2).coerceIn(2, 4)
    }
}
