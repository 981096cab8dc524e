// The pure-Kotlin selector as a JVM library (no Android dependencies): `gradle :selector:test` (from android_demo/)
// replays the golden vectors. CI does not use Gradle: android_demo/test.sh compiles the same sources with kotlinc.
// Test resources (src/test/resources/selector_golden.json) are a byte-identical copy of tests/golden/.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    `java-library`
    `java-test-fixtures` // GoldenCases (src/testFixtures): the golden-file reader shared with :core's tests
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // Android provides org.json at run time; on the JVM the tests need an implementation of it.
    compileOnly(libs.json)
    testImplementation(libs.json)
    testImplementation(libs.junit)
    testFixturesImplementation(libs.json)
}
