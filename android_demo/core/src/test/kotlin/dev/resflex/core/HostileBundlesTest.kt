package dev.resflex.core

import java.io.File
import org.json.JSONArray
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test

/** What [ResflexBundle.open] did with a bundle within a time bound (a reader blocked on a FIFO never returns). */
data class OpenOutcome(
    /** "ok", "reject" (a BundleError), "foreign" (another throwable escaped) or "hung". */
    val verdict: String,
    val message: String
)

/** `ResflexBundle.open(dir, backends)` (every backend verified, as at app load) on a daemon thread, for at most `seconds`. */
fun openWithin(dir: File, backends: Collection<String>? = null, seconds: Long = 10): OpenOutcome {
    var outcome = OpenOutcome("hung", "no answer within $seconds s")
    val thread = Thread {
        outcome = try {
            ResflexBundle.open(dir, backends)
            OpenOutcome("ok", "")
        } catch (e: BundleError) {
            OpenOutcome("reject", e.message ?: "")
        } catch (e: Throwable) {
            OpenOutcome("foreign", e.toString())
        }
    }
    thread.isDaemon = true
    thread.start()
    thread.join(seconds * 1000)
    return if (thread.isAlive) OpenOutcome("hung", "no answer within $seconds s") else outcome
}

/**
 * The hostile-bundle table shared by the three readers (tests/adversarial/hostile_bundles.py writes it; scripts/test.sh
 * exports RESFLEX_HOSTILE_DIR): every case must be accepted or refused (with a BundleError, in time) as Python does.
 */
class HostileBundlesTest {
    @Test
    fun sharedHostileTable() {
        val path = System.getenv("RESFLEX_HOSTILE_DIR")
        assumeTrue("RESFLEX_HOSTILE_DIR not set (scripts/test.sh generates the table)", path != null)
        val table = File(path, "cases.json")
        assertTrue("RESFLEX_HOSTILE_DIR is set but $table is missing", table.isFile)
        val cases = JSONArray(table.readText(Charsets.UTF_8))
        assertTrue("$table: no cases", cases.length() > 0)
        val wrong = ArrayList<String>()
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            val name = c.getString("name")
            val expect = c.getString("expect")
            assertTrue("$name: expect is $expect", expect == "ok" || expect == "reject")
            val got = openWithin(File(path, name))
            if (got.verdict != expect) wrong.add("$name: expected $expect (${c.optString("why")}), got $got")
        }
        println("hostile bundles: ${cases.length()} cases, ${cases.length() - wrong.size} agree")
        assertEquals(wrong.joinToString("\n"), 0, wrong.size)
    }
}
