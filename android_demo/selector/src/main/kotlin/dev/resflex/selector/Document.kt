package dev.resflex.selector

import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction
import java.nio.file.Files
import java.nio.file.LinkOption
import java.nio.file.NoSuchFileException
import java.nio.file.attribute.BasicFileAttributes

/**
 * The limits every resflex reader (Python, Kotlin, Swift) puts on a bundle's JSON documents, and reading one without
 * following a symlink or blocking on a FIFO (the file type is checked before anything is opened).
 */
object Document {
    /** mobile/bundle/schema.py MAX_DOCUMENT_BYTES: manifest.json, lut.json, selector_policy.json. */
    const val MAX_BYTES = 64 * 1024 * 1024
    /** Nesting of lists and objects (a real lut.json is under 10 deep); org.json recurses, so deeper is refused first. */
    const val MAX_DEPTH = 64
    const val TOO_DEEP = "JSON nested too deeply (more than $MAX_DEPTH levels of lists and objects)"
    const val SYMLINK = "is a symlink; a bundle may not contain symlinks"

    /** What is at a path, not following a symlink. */
    enum class Kind { FILE, FOLDER, SYMLINK, SPECIAL }

    /** The kind of `file` (lstat), or null when nothing is there. */
    @JvmStatic
    fun kind(file: File): Kind? {
        val a = try {
            Files.readAttributes(file.toPath(), BasicFileAttributes::class.java, LinkOption.NOFOLLOW_LINKS)
        } catch (e: NoSuchFileException) {
            return null
        }
        return when {
            a.isSymbolicLink -> Kind.SYMLINK
            a.isDirectory -> Kind.FOLDER
            a.isRegularFile -> Kind.FILE
            else -> Kind.SPECIAL
        }
    }

    /** True when the brackets outside strings nest deeper than [MAX_DEPTH]. */
    @JvmStatic
    fun tooDeep(text: String): Boolean {
        var depth = 0
        var inString = false
        var escaped = false
        for (c in text) {
            if (inString) {
                if (escaped) escaped = false else if (c == '\\') escaped = true else if (c == '"') inString = false
            } else if (c == '"') {
                inString = true
            } else if (c == '[' || c == '{') {
                depth++
                if (depth > MAX_DEPTH) return true
            } else if (c == ']' || c == '}') {
                depth--
            }
        }
        return false
    }

    /**
     * The text of the document `file` (`name` in errors): a regular file (not a symlink, FIFO, socket, device or
     * folder) of at most [MAX_BYTES], in UTF-8. Every problem is a [SchemaException] "name: problem".
     */
    @JvmStatic
    fun read(file: File, name: String): String {
        val kind = try {
            kind(file)
        } catch (e: IOException) {
            throw SchemaException("$name: cannot be read: $e")
        }
        when (kind) {
            null -> throw SchemaException("$name: not found in ${file.absoluteFile.parent}")
            Kind.SYMLINK -> throw SchemaException("$name: $SYMLINK")
            Kind.FOLDER -> throw SchemaException("$name: is a folder; expected a JSON file")
            Kind.SPECIAL -> throw SchemaException("$name: is not a regular file (a FIFO, socket or device); expected " +
                "a JSON file")
            Kind.FILE -> {}
        }
        val size = file.length()
        if (size > MAX_BYTES) throw SchemaException("$name: $size bytes; a document is at most $MAX_BYTES bytes")
        val bytes = try {
            FileInputStream(file).use { readAtMost(it, MAX_BYTES + 1) }
        } catch (e: IOException) {
            throw SchemaException("$name: cannot be read: ${e.message}")
        }
        if (bytes.size > MAX_BYTES) throw SchemaException("$name: more than $MAX_BYTES bytes; a document is at most that")
        return try {
            Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString()
        } catch (e: CharacterCodingException) {
            throw SchemaException("$name: not valid JSON: not UTF-8 text")
        }
    }

    private fun readAtMost(input: FileInputStream, limit: Int): ByteArray {
        val out = java.io.ByteArrayOutputStream()
        val buf = ByteArray(1 shl 16)
        while (out.size() < limit) {
            val n = input.read(buf, 0, Math.min(buf.size, limit - out.size()))
            if (n < 0) break
            out.write(buf, 0, n)
        }
        return out.toByteArray()
    }
}
