package dev.resflex.core

import java.io.File
import java.nio.file.Files
import org.json.JSONArray
import org.json.JSONObject
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test

/** The bundle reader on bundles written by the test into a temporary folder. */
class BundleTest {
    private lateinit var dir: File
    private lateinit var outside: File

    private val pte = "executorch/model_fp32.pte"
    private val pteBytes = ByteArray(300) { (it * 7).toByte() }
    private val tflite = "tflite/model_fp16.tflite"
    private val tfliteBytes = "TFL3-fake-flatbuffer".toByteArray()
    private val onnxMain = "onnx/model_fp32_8.onnx"
    private val onnxExtra = "onnx/model_fp32_6.onnx"

    /** sha256_of of the .mlpackage folder below, computed with Python's resflex.mobile.bundle.io.sha256_of. */
    private val mlpackageSha = "e74a21d06e37e86555d90d4114eff5a1e337b56924923118b7736ec04acfbc74"

    @Before
    fun setUp() {
        dir = Files.createTempDirectory("resflex-bundle").toFile()
        outside = Files.createTempDirectory("resflex-outside").toFile()
        write(pte, pteBytes)
        write(tflite, tfliteBytes)
        write(onnxMain, "onnx8".toByteArray())
        write(onnxExtra, "onnx6".toByteArray())
        write("coreml/model.mlpackage/Manifest.json", "{}".toByteArray())
        write("coreml/model.mlpackage/Data/com.apple.CoreML/model.mlmodel", "MODEL".toByteArray())
        write("coreml/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin", ByteArray(10) { it.toByte() })
        write("coreml/model.mlpackage/Data-x", "dash".toByteArray())
        writeDocs(manifest(), lut())
    }

    @After
    fun tearDown() {
        dir.deleteRecursively()
        outside.deleteRecursively()
    }

    private fun write(rel: String, bytes: ByteArray) {
        val f = File(dir, rel)
        f.parentFile.mkdirs()
        f.writeBytes(bytes)
    }

    private fun writeDocs(manifest: JSONObject, lut: JSONObject) {
        File(dir, "manifest.json").writeText(manifest.toString(2))
        File(dir, "lut.json").writeText(lut.toString(2))
    }

    private fun entry(res: Int, name: String, shape: List<Int>): JSONObject = JSONObject().put("resolution", res)
        .put("name", name).put("input_name", "x").put("output_name", "logits").put("input_shape", JSONArray(shape))

    private fun artifact(backend: String, precision: String, file: String, sha: String, layout: String,
                         entries: JSONArray): JSONObject = JSONObject().put("backend", backend)
        .put("precision", precision).put("file", file).put("sha256", sha).put("bytes", 1).put("layout", layout)
        .put("entries", entries).put("runs_on_host", true)

    private fun manifest(): JSONObject {
        val m = JSONObject()
        m.put("kind", "resflex.manifest")
        m.put("schema_version", "1.3")
        m.put("model", Synth.model(4))
        m.put("resolutions", JSONArray(listOf(8, 6)))
        m.put("inputs", JSONArray().put(Synth.inputSpec(8, 9, 8)).put(Synth.inputSpec(6, 7, 6)))
        val arts = JSONArray()
        arts.put(artifact("executorch", "fp32", pte, Sha256.of(pteBytes), "NCHW", JSONArray()
            .put(entry(8, "forward_8", listOf(1, 3, 8, 8))).put(entry(6, "forward_6", listOf(1, 3, 6, 6)))))
        arts.put(artifact("tflite", "fp16", tflite, Sha256.of(tfliteBytes), "NHWC", JSONArray()
            .put(entry(8, "serving_8", listOf(1, 8, 8, 3))).put(entry(6, "serving_6", listOf(1, 6, 6, 3)))))
        val onnx = artifact("onnx", "fp32", onnxMain, Sha256.of("onnx8".toByteArray()), "NCHW", JSONArray()
            .put(entry(8, "model_fp32_8.onnx", listOf(1, 3, 8, 8))).put(entry(6, "model_fp32_6.onnx",
                listOf(1, 3, 6, 6))))
        onnx.put("extra_files", JSONArray().put(JSONObject().put("file", onnxExtra)
            .put("sha256", Sha256.of("onnx6".toByteArray())).put("bytes", 5)))
        arts.put(onnx)
        arts.put(artifact("coreml", "fp16", "coreml/model.mlpackage", mlpackageSha, "NCHW", JSONArray()
            .put(entry(8, "forward_8", listOf(1, 3, 8, 8)))))
        m.put("artifacts", arts)
        m.put("failures", JSONArray())
        m.put("created_with", JSONObject().put("resflex", "0.1"))
        return m
    }

    private fun op(res: Int, backend: String, precision: String, unit: String, artifact: String, entry: String) =
        JSONObject().put("resolution", res).put("backend", backend).put("precision", precision)
            .put("compute_unit", unit).put("artifact", artifact).put("entry", entry).put("macs", res * 1000000L)
            .put("params", 1000).put("artifact_bytes", 1).put("artifact_resolutions", 2).put("top1", res / 10.0)
            .put("latency", JSONObject())

    private fun lut(): JSONObject {
        val ops = JSONArray()
        ops.put(op(8, "executorch", "fp32", "XNNPACK", pte, "forward_8"))
        ops.put(op(6, "executorch", "fp32", "XNNPACK", pte, "forward_6"))
        ops.put(op(8, "tflite", "fp16", "CPU", tflite, "serving_8"))
        ops.put(op(8, "tflite", "fp16", "GPU", tflite, "serving_8"))
        ops.put(op(6, "tflite", "fp16", "CPU", tflite, "serving_6"))
        ops.put(op(8, "onnx", "fp32", "CPUExecutionProvider", onnxMain, "model_fp32_8.onnx"))
        ops.put(op(8, "coreml", "fp16", "CPU_AND_NE", "coreml/model.mlpackage", "forward_8"))
        return JSONObject().put("kind", "resflex.lut").put("schema_version", "1.0").put("operating_points", ops)
            .put("devices", JSONObject())
    }

    private fun expectError(fileContains: String, messageContains: String, block: () -> Unit): BundleError {
        try {
            block()
        } catch (e: BundleError) {
            assertTrue("file '${e.file}' should contain '$fileContains' (${e.message})", e.file.contains(fileContains))
            assertTrue("message '${e.message}' should contain '$messageContains'",
                (e.message ?: "").contains(messageContains))
            return e
        }
        fail("expected a BundleError naming $fileContains")
        throw AssertionError()
    }

    @Test
    fun goodBundleOpensWithEveryPoint() {
        val b = ResflexBundle.open(dir)
        assertEquals(7, b.points.size)
        assertEquals(listOf("class_0", "class_1", "class_2", "class_3"), b.classNames)
        assertEquals(4, b.artifacts.size)
        assertEquals(2, b.inputs.size)
        assertNull(b.policy)
        val p = b.points[2]
        assertEquals("NHWC", p.layout)
        assertEquals("serving_8", p.entry.name)
        assertEquals(listOf(1L, 8L, 8L, 3L), p.shape().toList())
        assertEquals(9, p.input.resizeShorterTo)
        assertEquals(File(dir.canonicalFile, tflite), b.file(p.artifact))
        assertEquals("1.3", b.manifest.schemaVersion)
        assertNotNull(b.point(b.lut.operatingPoints[4]))
    }

    @Test
    fun directoryArtifactHashesLikePython() {
        assertEquals(mlpackageSha, Sha256.of(File(dir, "coreml/model.mlpackage"), "coreml/model.mlpackage"))
    }

    @Test
    fun backendsFilterServesOnlyThoseAndSkipsTheOthersFiles() {
        File(dir, "coreml").deleteRecursively()
        File(dir, "onnx").deleteRecursively()
        val b = ResflexBundle.open(dir, setOf("executorch", "tflite"))
        assertEquals(5, b.points.size)
        for (p in b.points) assertTrue(p.artifact.backend == "executorch" || p.artifact.backend == "tflite")
        expectError(onnxMain, "missing") { ResflexBundle.open(dir) }
        expectError("coreml/model.mlpackage", "missing") { ResflexBundle.open(dir, setOf("coreml")) }
    }

    @Test
    fun tamperedArtifactByteIsRefusedNamingTheFile() {
        val bytes = pteBytes.copyOf()
        bytes[123] = (bytes[123] + 1).toByte()
        write(pte, bytes)
        val e = expectError(pte, "sha256") { ResflexBundle.open(dir) }
        assertEquals("manifest.json artifacts[0].sha256", e.field)
    }

    @Test
    fun tamperedExtraFileAndFolderFileAreRefused() {
        write(onnxExtra, "onnx7".toByteArray())
        expectError(onnxExtra, "artifacts[2].extra_files[0].sha256") { ResflexBundle.open(dir) }
        write(onnxExtra, "onnx6".toByteArray())
        write("coreml/model.mlpackage/Data/com.apple.CoreML/model.mlmodel", "MODEl".toByteArray())
        expectError("coreml/model.mlpackage", "sha256") { ResflexBundle.open(dir) }
    }

    @Test
    fun missingArtifactIsRefusedNamingTheFile() {
        File(dir, tflite).delete()
        val e = expectError(tflite, "missing") { ResflexBundle.open(dir) }
        assertEquals("manifest.json artifacts[1].file", e.field)
    }

    @Test
    fun unknownMajorVersionAndKindAreRefused() {
        writeDocs(manifest().put("schema_version", "2.0"), lut())
        expectError("manifest.json", "schema_version") { ResflexBundle.open(dir) }
        writeDocs(manifest(), lut().put("schema_version", "2.1"))
        expectError("lut.json", "schema_version") { ResflexBundle.open(dir) }
        writeDocs(manifest().put("kind", "resflex.lut"), lut())
        expectError("manifest.json", "kind") { ResflexBundle.open(dir) }
    }

    @Test
    fun unsafePathsAreRefused() {
        for (bad in listOf("../model.pte", "executorch/../../model.pte", "/etc/passwd", "executorch\\model.pte",
                "~/model.pte", "")) {
            val m = manifest()
            m.getJSONArray("artifacts").getJSONObject(0).put("file", bad)
            writeDocs(m, lut())
            val e = expectError("manifest.json", "not a safe relative path") { ResflexBundle.open(dir) }
            assertEquals("artifacts[0].file", e.field)
        }
        val m = manifest()
        m.getJSONArray("artifacts").getJSONObject(2).getJSONArray("extra_files").getJSONObject(0).put("file", "../x")
        writeDocs(m, lut())
        expectError("manifest.json", "artifacts[2].extra_files[0].file") { ResflexBundle.open(dir) }
        val l = lut()
        l.getJSONArray("operating_points").getJSONObject(0).put("artifact", "../executorch/model_fp32.pte")
        writeDocs(manifest(), l)
        expectError("lut.json", "operating_points[0].artifact") { ResflexBundle.open(dir) }
    }

    @Test
    fun symlinkLeavingTheBundleIsRefused() {
        val target = File(outside, "model_fp32.pte")
        target.writeBytes(pteBytes) // same bytes, so only the path check can refuse it
        File(dir, pte).delete()
        Files.createSymbolicLink(File(dir, pte).toPath(), target.toPath())
        expectError(pte, "is a symlink; a bundle may not contain symlinks") { ResflexBundle.open(dir) }
    }

    @Test
    fun symlinkInsideAFolderArtifactLeavingTheBundleIsRefused() {
        val target = File(outside, "weight.bin")
        target.writeBytes(ByteArray(10) { it.toByte() })
        val link = File(dir, "coreml/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin")
        link.delete()
        Files.createSymbolicLink(link.toPath(), target.toPath())
        expectError("weight.bin", "is a symlink") { ResflexBundle.open(dir) }
        expectError("weight.bin", "is a symlink") { Sha256.of(File(dir, "coreml/model.mlpackage"), "coreml") }
    }

    /** Python, Kotlin and Swift refuse every symlink in a bundle, even one that stays inside (issue 24). */
    @Test
    fun symlinkInsideTheBundleIsRefused() {
        val real = File(dir, "executorch/real.pte")
        real.writeBytes(pteBytes)
        File(dir, pte).delete()
        Files.createSymbolicLink(File(dir, pte).toPath(), File("real.pte").toPath())
        expectError(pte, "is a symlink; a bundle may not contain symlinks") { ResflexBundle.open(dir) }
    }

    @Test
    fun entryTheArtifactLacksIsNamed() {
        val l = lut()
        l.getJSONArray("operating_points").getJSONObject(1).put("entry", "forward_7")
        writeDocs(manifest(), l)
        val e = expectError("lut.json", "has no entry forward_7") { ResflexBundle.open(dir) }
        assertEquals("operating_points[1].entry", e.field)
    }

    @Test
    fun inputShapeMustMatchLayoutAndCrop() {
        val m = manifest()
        m.getJSONArray("artifacts").getJSONObject(1).getJSONArray("entries").getJSONObject(0)
            .put("input_shape", JSONArray(listOf(1, 3, 8, 8)))
        writeDocs(m, lut())
        expectError("manifest.json", "artifacts[1].entries[0].input_shape") { ResflexBundle.open(dir) }
    }

    @Test
    fun malformedFieldsAreNamed() {
        val m = manifest()
        m.getJSONObject("model").put("num_classes", "four")
        writeDocs(m, lut())
        expectError("manifest.json", "model.num_classes") { ResflexBundle.open(dir) }
        val m2 = manifest()
        m2.getJSONArray("inputs").getJSONObject(0).put("interpolation", "nearest")
        writeDocs(m2, lut())
        expectError("manifest.json", "inputs[0].interpolation") { ResflexBundle.open(dir) }
        File(dir, "manifest.json").writeText("{not json")
        expectError("manifest.json", "not valid JSON") { ResflexBundle.open(dir) }
        File(dir, "manifest.json").delete()
        expectError("manifest.json", "not found") { ResflexBundle.open(dir) }
        expectError(File(dir, "nothing").path, "not a bundle folder") { ResflexBundle.open(File(dir, "nothing")) }
    }

    @Test
    fun selectorPolicyIsReadAndCheckedWhenPresent() {
        File(dir, "selector_policy.json").writeText("{\"latency_budget_ms\": 20.0, \"hysteresis_frames\": 3}")
        val b = ResflexBundle.open(dir)
        assertEquals(20.0, b.policy!!.latencyBudgetMs, 0.0)
        assertEquals(3, b.policy!!.hysteresisFrames)
        File(dir, "selector_policy.json").writeText("{\"latency_budget_mss\": 20.0}")
        expectError("selector_policy.json", "latency_budget_mss") { ResflexBundle.open(dir) }
    }

    /** One bad manifest.json: the field path the error must name, a fragment of the problem, how to break it. */
    private class Bad(val field: String, val problem: String, val mutate: (JSONObject) -> Unit)

    private fun art(m: JSONObject, i: Int): JSONObject = m.getJSONArray("artifacts").getJSONObject(i)

    private fun ent(m: JSONObject, i: Int, j: Int): JSONObject = art(m, i).getJSONArray("entries").getJSONObject(j)

    private fun inp(m: JSONObject, i: Int): JSONObject = m.getJSONArray("inputs").getJSONObject(i)

    /** The ranges of mobile/bundle/schema.py RULES for manifest.json, one row per rule. */
    private val badManifests = listOf(
        Bad("schema_version", "1.garbage is not supported") { it.put("schema_version", "1.garbage") },
        Bad("resolutions[0]", "-8 is out of range (expected ≥ 1 and ≤ 65536)") {
            it.put("resolutions", JSONArray(listOf(-8, 6)))
        },
        Bad("resolutions[1]", "repeated value 8") { it.put("resolutions", JSONArray(listOf(8, 8))) },
        Bad("resolutions[0]", "integers are at most 2^53 − 1") {
            it.put("resolutions", JSONArray().put(9007199254740992L))
        },
        Bad("model.train_resolutions[1]", "repeated value 224") {
            it.getJSONObject("model").put("train_resolutions", JSONArray(listOf(224, 224)))
        },
        Bad("model.num_classes", "0 is out of range (expected ≥ 1)") { it.getJSONObject("model").put("num_classes", 0) },
        Bad("model.width", "out of range (expected > 0)") { it.getJSONObject("model").put("width", -1.0) },
        Bad("model.checkpoint_sha256", "does not match ^[0-9a-f]{64}$") {
            it.getJSONObject("model").put("checkpoint_sha256", "C".repeat(64))
        },
        Bad("inputs[0].resolution", "0 is out of range") { inp(it, 0).put("resolution", 0) },
        Bad("inputs[1].resolution", "duplicate input resolution 8") { inp(it, 1).put("resolution", 8) },
        Bad("inputs[0].crop", "out of range") { inp(it, 0).put("crop", 0) },
        Bad("inputs[0].resize_shorter_to", "out of range") { inp(it, 0).put("resize_shorter_to", 70000) },
        Bad("inputs[0].std[1]", "-0.1 is out of range (expected > 0)") {
            inp(it, 0).put("std", JSONArray(listOf(0.2, -0.1, 0.2)))
        },
        Bad("inputs[0].mean[1]", "finite") { inp(it, 0).put("mean", JSONArray(listOf(0.5, Double.NaN, 0.5))) },
        Bad("artifacts[0].sha256", "does not match ^[0-9a-f]{64}$") { art(it, 0).put("sha256", "abc") },
        Bad("artifacts[0].sha256", "does not match") {
            art(it, 0).put("sha256", Sha256.of(pteBytes).toUpperCase())
        },
        Bad("artifacts[2].extra_files[0].sha256", "does not match") {
            art(it, 2).getJSONArray("extra_files").getJSONObject(0).put("sha256", "g".repeat(64))
        },
        Bad("artifacts[2].extra_files[0].bytes", "out of range (expected ≥ 0)") {
            art(it, 2).getJSONArray("extra_files").getJSONObject(0).put("bytes", -5)
        },
        Bad("artifacts[0].bytes", "-1 is out of range (expected ≥ 0)") { art(it, 0).put("bytes", -1) },
        Bad("artifacts[0].convert_seconds", "out of range") { art(it, 0).put("convert_seconds", -0.5) },
        Bad("artifacts[0].entries[0].name", "does not match") { ent(it, 0, 0).put("name", "forward 8") },
        Bad("artifacts[0].entries[0].name", "does not match") { ent(it, 0, 0).put("name", "../forward_8") },
        Bad("artifacts[0].entries[0].name", "does not match") { ent(it, 0, 0).put("name", "x".repeat(129)) },
        Bad("artifacts[0].entries[1].name", "duplicate entry name forward_8") { ent(it, 0, 1).put("name", "forward_8") },
        Bad("artifacts[0].entries[1].resolution", "duplicate entry (resolution, stage scales) 8") {
            ent(it, 0, 1).put("resolution", 8)
        },
        // Resizable Networks: the same resolution with the same stage scales twice; a factor outside (0, 1]
        Bad("artifacts[0].entries[1].resolution", "duplicate entry (resolution, stage scales) 8 [1.0, 0.5]") {
            ent(it, 0, 0).put("stage_scales", JSONArray(listOf(1.0, 0.5)))
            ent(it, 0, 1).put("resolution", 8).put("stage_scales", JSONArray(listOf(1.0, 0.5)))
        },
        Bad("artifacts[0].entries[0].stage_scales[1]", "1.5 is out of range") {
            ent(it, 0, 0).put("stage_scales", JSONArray(listOf(1.0, 1.5)))
        },
        Bad("artifacts[0].entries[0].resolution", "out of range") { ent(it, 0, 0).put("resolution", -8) },
        Bad("artifacts[0].entries[0].input_shape[2]", "0 is out of range (expected ≥ 1)") {
            ent(it, 0, 0).put("input_shape", JSONArray(listOf(1, 3, 0, 8)))
        },
        Bad("artifacts[0].entries", "at least one resolution") { art(it, 0).put("entries", JSONArray()) },
        Bad("artifacts[2].entries[1].name", "names the file 'onnx/model_fp32_7.onnx'") {
            ent(it, 2, 1).put("name", "model_fp32_7.onnx")
        },
        Bad("artifacts[1].file", "reserved") { art(it, 1).put("file", "lut.json") },
        Bad("artifacts[1].file", "duplicate artifact file") { art(it, 1).put("file", pte) },
        Bad("artifacts[0].file", "not a safe relative path") { art(it, 0).put("file", "executorch/./model_fp32.pte") },
        Bad("artifacts[0].file", "not a safe relative path") { art(it, 0).put("file", "executorch//model_fp32.pte") },
        Bad("artifacts[0].parity[0].top1_agreement", "1.5 is out of range (expected ≥ 0 and ≤ 1)") {
            art(it, 0).put("parity", JSONArray().put(JSONObject().put("resolution", 8).put("samples", 10)
                .put("max_rel_error", 0.0).put("top1_agreement", 1.5).put("top1_artifact", 0.5)
                .put("top1_torch", 0.5).put("passed", false)))
        }
    )

    @Test
    fun outOfRangeManifestValuesAreRefusedNamingTheField() {
        for ((n, c) in badManifests.withIndex()) {
            val m = manifest()
            c.mutate(m)
            try {
                Manifest.fromJson(m, "manifest.json")
                fail("case $n (${c.field}): accepted")
            } catch (e: BundleError) {
                assertEquals("case $n: ${e.message}", "manifest.json", e.file)
                assertEquals("case $n: ${e.message}", c.field, e.field)
                assertTrue("case $n: '${e.message}' should say '${c.problem}'", e.problem.contains(c.problem))
            }
        }
    }

    @Test
    fun outOfRangeValuesInAWrittenBundleAreRefusedByOpen() {
        val m = manifest()
        art(m, 0).put("sha256", "not-a-sha")
        writeDocs(m, lut())
        val e = expectError("manifest.json", "does not match") { ResflexBundle.open(dir) }
        assertEquals("artifacts[0].sha256", e.field)
        val l = lut()
        l.getJSONArray("operating_points").getJSONObject(2).put("top1", 1.5)
        writeDocs(manifest(), l)
        val e2 = expectError("lut.json", "operating_points[2].top1: 1.5 is out of range") { ResflexBundle.open(dir) }
        assertEquals("lut.json: operating_points[2].top1: 1.5 is out of range (expected ≥ 0 and ≤ 1)", e2.message)
        val l2 = lut()
        l2.put("schema_version", "1.garbage")
        writeDocs(manifest(), l2)
        expectError("lut.json", "schema_version 1.garbage is not supported") { ResflexBundle.open(dir) }
        // The unchanged bundle still opens.
        writeDocs(manifest(), lut())
        assertEquals(7, ResflexBundle.open(dir).points.size)
    }

    // Issue 24: the rules all three readers apply. Before, Kotlin hung on a FIFO artifact or lut.json, threw
    // StackOverflowError on a deeply nested lut.json, and accepted an inside symlink and a 180 MB lut.json.

    private val symlinkRefused = "is a symlink; a bundle may not contain symlinks"
    private val specialRefused = "is not a regular file or folder (a FIFO, socket or device); a bundle holds only " +
        "files and folders"

    private fun mkfifo(rel: String) {
        val f = File(dir, rel)
        f.parentFile.mkdirs()
        f.delete()
        assertEquals("mkfifo $f", 0, ProcessBuilder("mkfifo", f.path).start().waitFor())
    }

    @Test
    fun symlinkedDocumentsLeadingOutsideAreRefused() {
        File(dir, "selector_policy.json").writeText("{\"latency_budget_ms\": 20.0}")
        for (name in listOf("manifest.json", "lut.json", "selector_policy.json")) {
            val doc = File(dir, name)
            val moved = File(outside, name)
            assertTrue(doc.renameTo(moved))
            Files.createSymbolicLink(doc.toPath(), moved.toPath())
            assertEquals(OpenOutcome("reject", "$name: $symlinkRefused"), openWithin(dir))
            assertTrue(doc.delete() && moved.renameTo(doc))
        }
        assertEquals("ok", openWithin(dir).verdict)
    }

    @Test
    fun unlistedSymlinksAnywhereAreRefused() {
        write("notes/readme.txt", "hello".toByteArray())
        Files.createSymbolicLink(File(dir, "notes/root").toPath(), File("/").toPath())
        assertEquals(OpenOutcome("reject", "notes/root: $symlinkRefused"), openWithin(dir))
        File(dir, "notes/root").delete()
        Files.createSymbolicLink(File(dir, "notes/dangling").toPath(), File("nowhere").toPath())
        assertEquals(OpenOutcome("reject", "notes/dangling: $symlinkRefused"), openWithin(dir, setOf("executorch")))
    }

    @Test
    fun fifosAreRefusedWithoutBlocking() {
        for (fifo in listOf(pte, "lut.json", "manifest.json", "selector_policy.json",
                "coreml/model.mlpackage/Data/pipe", "unlisted/pipe")) {
            tearDown()
            setUp()
            assertEquals("ok", openWithin(dir).verdict)
            mkfifo(fifo)
            assertEquals(fifo, OpenOutcome("reject", "$fifo: $specialRefused"), openWithin(dir))
        }
        tearDown()
        setUp()
        mkfifo("coreml/model.mlpackage/Data/pipe")
        assertEquals(OpenOutcome("reject", "coreml/model.mlpackage/Data/pipe: $specialRefused"),
            openWithin(dir, setOf("coreml")))
    }

    @Test
    fun documentsOverTheSizeCapAreRefusedBeforeReading() {
        for (name in listOf("lut.json", "manifest.json", "selector_policy.json")) {
            val f = File(dir, name)
            val saved = if (f.exists()) f.readBytes() else null
            java.io.RandomAccessFile(f, "rw").use { it.setLength(180L shl 20) } // sparse: nothing should be read
            assertEquals(OpenOutcome("reject", "$name: ${180L shl 20} bytes; a document is at most ${64 shl 20} bytes"),
                openWithin(dir))
            if (saved != null) f.writeBytes(saved) else f.delete()
        }
        assertEquals("ok", openWithin(dir).verdict)
    }

    @Test
    fun deepNestingIsTheReadersOwnError() {
        val deep = "[".repeat(100000) + "]".repeat(100000)
        val nested = "JSON nested too deeply (more than 64 levels of lists and objects)"
        File(dir, "lut.json").writeText("{\"kind\": \"resflex.lut\", \"x\": $deep}")
        assertEquals(OpenOutcome("reject", "lut.json: $nested"), openWithin(dir))
        writeDocs(manifest(), lut())
        File(dir, "selector_policy.json").writeText("{\"x\": $deep}")
        assertEquals(OpenOutcome("reject", "selector_policy.json: $nested"), openWithin(dir))
        File(dir, "selector_policy.json").delete()
        File(dir, "manifest.json").writeText(deep)
        assertEquals(OpenOutcome("reject", "manifest.json: $nested"), openWithin(dir))
        // The bound counts brackets outside strings only.
        assertTrue(!dev.resflex.selector.Document.tooDeep("[".repeat(64) + "]".repeat(64)))
        assertTrue(dev.resflex.selector.Document.tooDeep("[".repeat(65) + "]".repeat(65)))
        assertTrue(!dev.resflex.selector.Document.tooDeep("[\"" + "[{".repeat(100) + "\\\"[\"]"))
    }

    @Test
    fun invalidUtf8IsNotValidJson() {
        File(dir, "lut.json").writeBytes(byteArrayOf('{'.toByte(), '"'.toByte(), 0xff.toByte(), '"'.toByte(),
            ':'.toByte(), '1'.toByte(), '}'.toByte()))
        assertEquals(OpenOutcome("reject", "lut.json: not valid JSON: not UTF-8 text"), openWithin(dir))
    }

    @Test
    fun onlyAnMlpackageMayBeAFolderAndHardLinksAreRefused() {
        File(dir, pte).delete()
        write("$pte/program", "pte program".toByteArray())
        val m = manifest()
        art(m, 0).put("sha256", Sha256.of(File(dir, pte), pte))
        writeDocs(m, lut())
        assertEquals(OpenOutcome("reject", "$pte: manifest.json artifacts[0].file: is a folder; only a .mlpackage " +
            "artifact may be a folder"), openWithin(dir))
        File(dir, pte).deleteRecursively()
        write(pte, pteBytes)
        writeDocs(manifest(), lut())
        assertEquals("ok", openWithin(dir).verdict)
        Files.createLink(File(outside, "shared.json").toPath(), File(dir, "coreml/model.mlpackage/Manifest.json").toPath())
        assertEquals(OpenOutcome("reject", "coreml/model.mlpackage: manifest.json artifacts[3].file: " +
            "coreml/model.mlpackage/Manifest.json has other hard links; a bundle's files may not be shared with " +
            "files elsewhere"), openWithin(dir))
    }
}
