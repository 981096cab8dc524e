// The pure-Kotlin selector as a JVM library (no Android dependencies): `gradle test` replays the golden vectors.
// CI does not use Gradle: android_demo/selector/test.sh compiles the same sources with kotlinc.
// In an Android app, depend on this module, or copy src/main/kotlin into the app (Android ships org.json).
// Test resources (src/test/resources/selector_golden.json) are a byte-identical copy of tests/golden/.
plugins {
    kotlin("jvm") version "2.0.21"
}

repositories {
    mavenCentral()
}

dependencies {
    // Android provides org.json at run time; on the JVM the tests need an implementation of it.
    compileOnly("org.json:json:20240303")
    testImplementation("org.json:json:20240303")
    testImplementation("junit:junit:4.13.2")
}

