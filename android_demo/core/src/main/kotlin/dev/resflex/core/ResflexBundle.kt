package dev.resflex.core

import dev.resflex.selector.Document
import dev.resflex.selector.Lut
import dev.resflex.selector.OperatingPoint
import dev.resflex.selector.Policy
import dev.resflex.selector.SchemaException
import dev.resflex.selector.SchemaRules
import java.io.File
import java.io.FileInputStream
import java.nio.file.Files
import java.nio.file.LinkOption
import java.security.MessageDigest

/** One operating point of the LUT that this bundle can serve: its artifact, entry and input spec. */
data class BundlePoint(
    /** Position in the bundle's lut.json operating_points. */
    val lutIndex: Int,
    val point: OperatingPoint,
    val artifact: ArtifactInfo,
    val entry: EntryInfo,
    val input: InputSpec
) {
    /** "NCHW" or "NHWC". */
    val layout: String get() = artifact.layout

    /** The entry's input shape (batch 1, in the artifact's layout). */
    fun shape(): LongArray {
        val s = LongArray(entry.inputShape.size)
        for (i in s.indices) s[i] = entry.inputShape[i].toLong()
        return s
    }

    /** "224 executorch fp32 XNNPACK" (+ stage scales), for logs and the screen. */
    fun label(): String = describe(point)

    companion object {
        @JvmStatic
        fun describe(p: OperatingPoint): String =
            "${p.resolution} ${p.backend} ${p.precision} ${p.computeUnit}" +
                (if (p.stageScales != null) " ${p.stageScales}" else "")

        /** Same operating point (the LUT's key: resolution, backend, precision, compute unit, stage scales). */
        @JvmStatic
        fun sameKey(a: OperatingPoint, b: OperatingPoint): Boolean =
            a.resolution == b.resolution && a.backend == b.backend && a.precision == b.precision &&
                a.computeUnit == b.computeUnit && a.stageScales == b.stageScales
    }
}

/**
 * A resflex bundle (the output of `resflex convert`): manifest.json, lut.json, the optional selector_policy.json
 * and the artifacts. [open] refuses a bundle holding a symlink or a special file (FIFO, socket, device) anywhere,
 * documents over 64 MB or nested too deeply or with another kind or major schema version, paths that are not safe
 * relative paths (absolute, `..`, backslashes), or artifact files that are missing or do not match their sha256 —
 * every error a [BundleError] naming the file and the field. Only after that are the artifacts handed to an engine.
 *
 *     val bundle = ResflexBundle.open(File(filesDir, "bundle"), setOf("executorch", "tflite"))
 *     for (p in bundle.points) println(p.label() + " → " + bundle.file(p.artifact))
 */
class ResflexBundle private constructor(
    /** The bundle folder (null for a bundle built in memory with [of]). */
    val dir: File?,
    val manifest: Manifest,
    val lut: Lut,
    /** selector_policy.json, if the bundle has one. */
    val policy: Policy?,
    /** The LUT's operating points this bundle can serve (artifact of an accepted backend, verified on [open]). */
    val points: List<BundlePoint>
) {
    val classNames: List<String> get() = manifest.model.classNames
    val artifacts: List<ArtifactInfo> get() = manifest.artifacts
    val inputs: List<InputSpec> get() = manifest.inputs

    /** The file of a (verified) artifact, for engines that load from a path. */
    fun file(artifact: ArtifactInfo): File {
        val d = dir ?: throw IllegalStateException("bundle built in memory has no files")
        return File(d, artifact.file)
    }

    fun point(p: OperatingPoint): BundlePoint? {
        for (b in points) if (BundlePoint.sameKey(b.point, p)) return b
        return null
    }

    companion object {
        const val LUT_FILE = "lut.json"

        /**
         * Open and verify the bundle in [dir]. With [backends], only artifacts of those backends are verified and
         * served (an Android app copies only `executorch/` and `tflite/`); the others need not be present.
         */
        @JvmStatic
        @JvmOverloads
        fun open(dir: File, backends: Collection<String>? = null): ResflexBundle {
            try {
                return openChecked(dir, backends)
            } catch (e: BundleError) {
                throw e
            } catch (e: Exception) {
                throw BundleError(dir.path, null, "cannot be read: $e")
            } catch (e: StackOverflowError) {
                throw BundleError(dir.path, null, "cannot be read: nested too deeply")
            }
        }

        private fun openChecked(dir: File, backends: Collection<String>?): ResflexBundle {
            if (!dir.isDirectory) throw BundleError(dir.path, null, "not a bundle folder (expected manifest.json, " +
                "lut.json and the artifacts inside)")
            val root = dir.canonicalFile
            BundlePaths.checkTree(root)
            val manifest = Manifest.parse(readDoc(root, Manifest.FILE), Manifest.FILE)
            val lut = try {
                Lut.parse(readDoc(root, LUT_FILE), LUT_FILE)
            } catch (e: IllegalArgumentException) {
                // Lut's messages start with the source it was given ("lut.json: operating_points[3].top1: …").
                val message = e.message ?: e.toString()
                throw BundleError(LUT_FILE, null, message.removePrefix("$LUT_FILE: "))
            }
            var policy: Policy? = null
            if (Document.kind(File(root, Policy.FILE)) != null) {
                policy = try {
                    Policy.parse(readDoc(root, Policy.FILE), Policy.DEFAULT, Policy.FILE)
                } catch (e: IllegalArgumentException) {
                    throw BundleError(Policy.FILE, null, (e.message ?: e.toString()).removePrefix("${Policy.FILE}: "))
                }
            }
            for (i in manifest.artifacts.indices) {
                val a = manifest.artifacts[i]
                if (backends != null && !backends.contains(a.backend)) continue
                verify(root, a.file, a.sha256, "artifacts[$i]")
                for (j in a.extraFiles.indices) {
                    verify(root, a.extraFiles[j].file, a.extraFiles[j].sha256, "artifacts[$i].extra_files[$j]")
                }
            }
            return build(root, manifest, lut, policy, backends)
        }

        /** A bundle from documents already in memory (no files, nothing verified): tests, replays, previews. */
        @JvmStatic
        @JvmOverloads
        fun of(manifest: Manifest, lut: Lut, policy: Policy? = null, backends: Collection<String>? = null):
            ResflexBundle = build(null, manifest, lut, policy, backends)

        private fun build(dir: File?, manifest: Manifest, lut: Lut, policy: Policy?,
                          backends: Collection<String>?): ResflexBundle {
            val points = ArrayList<BundlePoint>()
            for (i in lut.operatingPoints.indices) {
                val p = lut.operatingPoints[i]
                val where = "operating_points[$i]"
                BundlePaths.checkRelative(p.artifact, LUT_FILE, "$where.artifact")
                val a = manifest.artifact(p.artifact) ?: throw BundleError(LUT_FILE, "$where.artifact",
                    "${p.artifact} is not an artifact of manifest.json")
                if (a.backend != p.backend || a.precision != p.precision) {
                    throw BundleError(LUT_FILE, where, "${p.backend} ${p.precision} does not match its artifact " +
                        "${a.file} (${a.backend} ${a.precision})")
                }
                val units = a.computeUnits
                if (units != null && !units.contains(p.computeUnit)) {
                    throw BundleError(LUT_FILE, "$where.compute_unit", "${p.computeUnit}: manifest.json offers " +
                        "${a.file} on ${units.joinToString(", ")} only" + if (units == listOf("CPU")) " (a CPU-only " +
                        "artifact: its bias scales are ones only the CPU kernels ignore)" else "")
                }
                val e = a.entry(p.entry) ?: throw BundleError(LUT_FILE, "$where.entry", "${a.file} has no entry " +
                    "${p.entry} (it has ${entryNames(a)})")
                if (e.resolution != p.resolution) {
                    throw BundleError(LUT_FILE, "$where.entry", "${p.entry} of ${a.file} serves ${e.resolution} px, " +
                        "not ${p.resolution}")
                }
                val spec = manifest.input(p.resolution) ?: throw BundleError(Manifest.FILE, "inputs",
                    "no InputSpec for resolution ${p.resolution} (used by lut.json $where)")
                checkShape(manifest, a, e, spec)
                if (backends == null || backends.contains(a.backend)) points.add(BundlePoint(i, p, a, e, spec))
            }
            return ResflexBundle(dir, manifest, lut, policy, points)
        }

        private fun entryNames(a: ArtifactInfo): String {
            val names = ArrayList<String>()
            for (e in a.entries) names.add(e.name)
            return names.joinToString(", ")
        }

        /** The entry's input_shape must be batch 1, 3 channels, crop × crop, in the artifact's layout. */
        private fun checkShape(manifest: Manifest, a: ArtifactInfo, e: EntryInfo, spec: InputSpec) {
            val c = spec.crop
            val want = if (a.layout == "NHWC") listOf(1, c, c, 3) else listOf(1, 3, c, c)
            if (e.inputShape != want) {
                var ai = 0
                var ei = 0
                for (i in manifest.artifacts.indices) if (manifest.artifacts[i] === a) ai = i
                for (j in a.entries.indices) if (a.entries[j] === e) ei = j
                throw BundleError(Manifest.FILE, "artifacts[$ai].entries[$ei].input_shape", "${e.inputShape} does " +
                    "not match the ${a.layout} input of InputSpec ${spec.resolution} (crop ${spec.crop}): expected $want")
            }
        }

        private fun readDoc(root: File, name: String): String = try {
            Document.read(File(root, name), name)
        } catch (e: SchemaException) {
            throw BundleError(name, null, (e.message ?: e.toString()).removePrefix("$name: "))
        }

        private fun verify(root: File, rel: String, sha256: String, field: String) {
            BundlePaths.checkRelative(rel, Manifest.FILE, "$field.file")
            val f = File(root, rel)
            val where = "${Manifest.FILE} $field.file"
            val kind = Document.kind(f) ?: throw BundleError(rel, where, "missing from the bundle (copy the whole " +
                "bundle again)")
            if (kind == Document.Kind.FOLDER && !rel.endsWith(".mlpackage")) {
                throw BundleError(rel, where, "is a folder; only a .mlpackage artifact may be a folder")
            }
            // As Python: a listed file shared by hard links with a file elsewhere could change without the bundle.
            for (x in f.walkTopDown()) {
                if (x.isFile && BundlePaths.hardLinks(x) > 1) {
                    throw BundleError(rel, where, "${x.relativeTo(root).invariantSeparatorsPath} has other hard " +
                        "links; a bundle's files may not be shared with files elsewhere")
                }
            }
            val got = Sha256.of(f, rel)
            if (!got.equals(sha256, ignoreCase = true)) {
                throw BundleError(rel, "${Manifest.FILE} $field.sha256", "sha256 is $got, the manifest says $sha256: " +
                    "the file was changed or damaged (copy the bundle again)")
            }
        }
    }
}

/** Path rules shared by the manifest reader and the bundle: relative POSIX paths that stay inside the bundle. */
object BundlePaths {
    /**
     * Refuse what Python's resflex.mobile.bundle.schema.safe_relpath refuses ([SchemaRules.pathProblem]): empty,
     * absolute, `~`, backslash, control characters, `..`, `.` or empty parts.
     */
    @JvmStatic
    fun checkRelative(path: String, source: String, field: String) {
        val problem = SchemaRules.pathProblem(path)
        if (problem != null) throw BundleError(source, field, problem)
    }

    /**
     * Every entry under `root`, listed in the manifest or not, must be a regular file or a folder: no symlink
     * (wherever it points), no FIFO, socket or device. Nothing is followed or opened (java.nio.file, Android API 26).
     */
    @JvmStatic
    fun checkTree(root: File) {
        val folders = ArrayList<String>()
        folders.add("")
        while (folders.isNotEmpty()) {
            val rel = folders.removeAt(folders.size - 1)
            val names = (if (rel.isEmpty()) root else File(root, rel)).list()
                ?: throw BundleError(if (rel.isEmpty()) root.path else rel, null, "cannot list the folder")
            names.sort()
            for (name in names) {
                val child = if (rel.isEmpty()) name else "$rel/$name"
                if (kindOf(File(root, child), child) == Document.Kind.FOLDER) folders.add(child)
            }
        }
    }

    /** FILE or FOLDER for what is at `file` (not following a symlink); a symlink or special file is refused. */
    @JvmStatic
    fun kindOf(file: File, name: String): Document.Kind {
        val kind = Document.kind(file) ?: throw BundleError(name, null, "vanished while the bundle was read")
        if (kind == Document.Kind.SYMLINK) throw BundleError(name, null, Document.SYMLINK)
        if (kind == Document.Kind.SPECIAL) throw BundleError(name, null, SPECIAL)
        return kind
    }

    /** The number of hard links of `file` (1 where the file system does not say). */
    @JvmStatic
    fun hardLinks(file: File): Int = try {
        Files.getAttribute(file.toPath(), "unix:nlink", LinkOption.NOFOLLOW_LINKS) as? Int ?: 1
    } catch (e: UnsupportedOperationException) {
        1
    } catch (e: IllegalArgumentException) {
        1
    }

    const val SPECIAL = "is not a regular file or folder (a FIFO, socket or device); a bundle holds only files and folders"
}

/** sha256 as `resflex.mobile.bundle.io.sha256_of`: a file's bytes, or a folder's sorted relative paths + contents. */
object Sha256 {
    /** Hex sha256 of a file or folder (`name` in errors); a symlink or special file in it is refused, never opened. */
    @JvmStatic
    fun of(file: File, name: String): String {
        val md = MessageDigest.getInstance("SHA-256")
        if (BundlePaths.kindOf(file, name) == Document.Kind.FOLDER) {
            val files = ArrayList<List<String>>()
            collect(file, ArrayList(), files, name)
            sort(files)
            for (parts in files) {
                md.update((parts.joinToString("/") + "\u0000").toByteArray(Charsets.UTF_8))
                feed(md, File(file, parts.joinToString(File.separator)))
            }
        } else {
            feed(md, file)
        }
        return hex(md.digest())
    }

    @JvmStatic
    fun of(bytes: ByteArray): String = hex(MessageDigest.getInstance("SHA-256").digest(bytes))

    @JvmStatic
    fun hex(digest: ByteArray): String {
        val sb = StringBuilder()
        for (b in digest) {
            val v = b.toInt() and 0xff
            sb.append("0123456789abcdef"[v shr 4]).append("0123456789abcdef"[v and 15])
        }
        return sb.toString()
    }

    private fun feed(md: MessageDigest, f: File) {
        val buf = ByteArray(1 shl 16)
        FileInputStream(f).use { input ->
            while (true) {
                val n = input.read(buf)
                if (n < 0) break
                md.update(buf, 0, n)
            }
        }
    }

    /** Files under `dir` as path components. */
    private fun collect(dir: File, prefix: List<String>, out: MutableList<List<String>>, name: String) {
        val children = dir.listFiles() ?: throw BundleError(name, null, "cannot list ${dir.path}")
        for (c in children) {
            val parts = ArrayList(prefix)
            parts.add(c.name)
            val rel = name + "/" + parts.joinToString("/")
            if (BundlePaths.kindOf(c, rel) == Document.Kind.FOLDER) collect(c, parts, out, name) else out.add(parts)
        }
    }

    /** Python's PurePosixPath order: component lists compared element by element, strings by code point. */
    private fun sort(files: MutableList<List<String>>) {
        for (i in 1 until files.size) {
            val x = files[i]
            var j = i - 1
            while (j >= 0 && less(x, files[j])) {
                files[j + 1] = files[j]
                j--
            }
            files[j + 1] = x
        }
    }

    private fun less(a: List<String>, b: List<String>): Boolean {
        var i = 0
        while (i < a.size && i < b.size) {
            val c = codePointCompare(a[i], b[i])
            if (c != 0) return c < 0
            i++
        }
        return a.size < b.size
    }

    private fun codePointCompare(a: String, b: String): Int {
        var i = 0
        var j = 0
        while (i < a.length && j < b.length) {
            val ca = a.codePointAt(i)
            val cb = b.codePointAt(j)
            if (ca != cb) return if (ca < cb) -1 else 1
            i += Character.charCount(ca)
            j += Character.charCount(cb)
        }
        return (a.length - i) - (b.length - j)
    }
}
