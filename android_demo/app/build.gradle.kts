// The Android demo app: thin wiring of core/ (bundle, preprocessing, frame loop, benchmark) to CameraX,
// ExecuTorch, LiteRT and the phone's power/thermal APIs. Not compiled in CI (no Android SDK there).
plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.resflex.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.resflex.demo"
        // 26: core/'s bundle reader checks file types with java.nio.file (no symlink followed, no FIFO opened).
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        // ExecuTorch's AAR ships arm64-v8a and x86_64 (emulator) libraries only.
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
        // Written into device_profile.json facts.
        buildConfigField("String", "EXECUTORCH_VERSION", "\"${libs.versions.executorch.get()}\"")
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
    }

    buildFeatures {
        buildConfig = true
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    androidResources {
        // Model files are copied out of the APK once; storing them uncompressed makes that a plain copy.
        noCompress += listOf("pte", "tflite")
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.androidx.activity)
    implementation(libs.androidx.core)
    implementation(libs.camerax.core)
    implementation(libs.camerax.camera2)
    implementation(libs.camerax.lifecycle)
    implementation(libs.camerax.view)
    implementation(libs.executorch.android)
    implementation(libs.litert)
    implementation(libs.litert.gpu)
    implementation(libs.litert.gpu.api)
}
