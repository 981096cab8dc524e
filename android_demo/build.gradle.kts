// Plugins are declared once here (versions in gradle/libs.versions.toml) and applied by the modules.
plugins {
    alias(libs.plugins.kotlin.jvm) apply false
    alias(libs.plugins.kotlin.android) apply false
    alias(libs.plugins.android.application) apply false
}
