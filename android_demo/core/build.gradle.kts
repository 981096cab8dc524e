// Pure-Kotlin core of the Android demo (no Android imports): bundle reader, preprocessing, frame loop, benchmark.
// `gradle :core:test` (from android_demo/); CI compiles the same sources with kotlinc (android_demo/test.sh).
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    `java-library`
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

sourceSets {
    test {
        // The frame-loop replay reads the selector's golden vectors from the selector module (one copy).
        resources.srcDir("../selector/src/test/resources")
    }
}

tasks.test {
    // BenchmarkTest writes device_profile_kotlin.json into $RESFLEX_PORT_OUT when set (see README.md).
    for (name in listOf("RESFLEX_PORT_OUT", "RESFLEX_PORT_LUT", "RESFLEX_PORT_CHECKPOINT_SHA256")) {
        System.getenv(name)?.let { environment(name, it) }
    }
}

dependencies {
    api(project(":selector"))
    // Android provides org.json at run time; on the JVM the tests need an implementation of it.
    compileOnly(libs.json)
    testImplementation(libs.json)
    testImplementation(libs.junit)
    testImplementation(testFixtures(project(":selector")))
}
