// resflex Android demo: pure-Kotlin modules (selector, core) tested on the JVM, and the Android app.
//   gradle :core:test :selector:test      JVM tests; no Android SDK needed
//   gradle :app:assembleDebug             needs the Android SDK (Android Studio, or ANDROID_HOME / local.properties)
// The app module is included only where an Android SDK is configured, so the JVM tests run without one.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "resflex-android"
include(":selector", ":core")

fun androidSdk(): String? {
    val local = file("local.properties")
    if (local.isFile) {
        val props = java.util.Properties()
        local.inputStream().use { props.load(it) }
        props.getProperty("sdk.dir")?.let { return it }
    }
    return System.getenv("ANDROID_HOME") ?: System.getenv("ANDROID_SDK_ROOT")
}

if (androidSdk() != null) {
    include(":app")
} else {
    println("resflex: no Android SDK (local.properties sdk.dir, ANDROID_HOME): building selector and core only")
}
