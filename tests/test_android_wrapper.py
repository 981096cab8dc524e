"""android_demo's Gradle wrapper: the files `./gradlew assembleDebug` needs are committed, the JAR is a real wrapper,
and the pinned Gradle is one the Android Gradle plugin declared in the build files supports. No network."""

import os
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

ANDROID = Path(__file__).resolve().parent.parent / "android_demo"

# Minimum Gradle per AGP major.minor, from the compatibility table of the AGP release notes
# (https://developer.android.com/build/releases/gradle-plugin#updating-gradle). Add a row when AGP is bumped.
MIN_GRADLE_FOR_AGP = {
    (8, 0): (8, 0), (8, 1): (8, 0), (8, 2): (8, 2), (8, 3): (8, 4), (8, 4): (8, 6),
    (8, 5): (8, 7), (8, 6): (8, 7), (8, 7): (8, 9), (8, 8): (8, 10, 2), (8, 9): (8, 11, 1),
}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def agp_version(android: Path) -> str:
    """AGP version of the build: a literal `id("com.android.application") version "x"` in a build script, else the
    version catalog entry the `android-application` plugin alias points to."""
    for script in sorted(android.glob("*.gradle.kts")):
        literal = re.search(r'id\("com\.android\.application"\)\s*version\s*"([^"]+)"', script.read_text())
        if literal:
            return literal.group(1)
    catalog = tomllib.loads((android / "gradle" / "libs.versions.toml").read_text())
    plugin = catalog["plugins"]["android-application"]
    assert plugin["id"] == "com.android.application"
    if isinstance(plugin.get("version"), str):
        return plugin["version"]
    return catalog["versions"][plugin["version"]["ref"]]


def wrapper_properties(android: Path) -> dict[str, str]:
    lines = (android / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip().replace("\\:", ":") for key, value in pairs}


def pinned_gradle(properties: dict[str, str]) -> str:
    url = properties["distributionUrl"]
    match = re.fullmatch(r"https://services\.gradle\.org/distributions/gradle-(\d+(?:\.\d+)*)-(bin|all)\.zip", url)
    assert match, f"gradle-wrapper.properties: distributionUrl {url!r} is not an official Gradle release zip"
    return match.group(1)


def check_compatible(agp: str, gradle: str) -> None:
    """Raise AssertionError naming both versions when `gradle` is below what AGP `agp` needs (or AGP is unknown)."""
    key = version(agp)[:2]
    assert key in MIN_GRADLE_FOR_AGP, f"AGP {agp} is not in MIN_GRADLE_FOR_AGP: add its row from the AGP notes"
    minimum = MIN_GRADLE_FOR_AGP[key]
    assert version(gradle) >= minimum, (
        f"gradle-wrapper.properties pins Gradle {gradle}, but AGP {agp} needs Gradle ≥ {'.'.join(map(str, minimum))}")


def test_wrapper_files_exist_and_gradlew_is_executable():
    wrapper = ("gradle/wrapper/gradle-wrapper.jar", "gradle/wrapper/gradle-wrapper.properties")
    for name in ("gradlew", "gradlew.bat", *wrapper):
        assert (ANDROID / name).is_file(), f"android_demo/{name} is missing"
    assert os.stat(ANDROID / "gradlew").st_mode & 0o111, "android_demo/gradlew is not executable"
    for script in ("gradlew", "gradlew.bat"):
        text = (ANDROID / script).read_text()
        assert "gradle-wrapper.jar" in text and "org.gradle.wrapper.GradleWrapperMain" in text, script


def test_wrapper_jar_is_a_wrapper():
    jar = ANDROID / "gradle" / "wrapper" / "gradle-wrapper.jar"
    assert zipfile.is_zipfile(jar), f"{jar} is not a zip (a Git LFS pointer or a truncated download?)"
    with zipfile.ZipFile(jar) as archive:
        assert archive.testzip() is None, f"{jar}: a member fails its CRC"
        assert "org/gradle/wrapper/GradleWrapperMain.class" in archive.namelist()


def test_pinned_gradle_supports_the_declared_agp():
    properties = wrapper_properties(ANDROID)
    check_compatible(agp_version(ANDROID), pinned_gradle(properties))
    checksum = properties.get("distributionSha256Sum")
    assert checksum is None or re.fullmatch(r"[0-9a-f]{64}", checksum), f"distributionSha256Sum {checksum!r}"


@pytest.mark.parametrize(
    "agp, gradle, message",
    [
        ("8.7.3", "8.7", "pins Gradle 8.7, but AGP 8.7.3 needs Gradle ≥ 8.9"),
        ("8.8.0", "8.10", "needs Gradle ≥ 8.10.2"),
        ("9.9.0", "9.9", "AGP 9.9.0 is not in MIN_GRADLE_FOR_AGP"),
    ],
)
def test_incompatible_pairs_are_refused(agp, gradle, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_compatible(agp, gradle)


def test_agp_is_read_from_a_literal_plugin_version_or_the_catalog(tmp_path):
    (tmp_path / "gradle").mkdir()
    (tmp_path / "gradle" / "libs.versions.toml").write_text(
        '[versions]\nagp = "8.2.0"\n[plugins]\n'
        'android-application = { id = "com.android.application", version.ref = "agp" }\n')
    assert agp_version(tmp_path) == "8.2.0"
    plugins = 'plugins { id("com.android.application") version "8.5.1" apply false }\n'
    (tmp_path / "build.gradle.kts").write_text(plugins)
    assert agp_version(tmp_path) == "8.5.1"
    (tmp_path / "gradle" / "wrapper").mkdir()
    (tmp_path / "gradle" / "wrapper" / "gradle-wrapper.properties").write_text(
        "distributionUrl=https\\://example.com/gradle-8.9-bin.zip\n")
    with pytest.raises(AssertionError, match="not an official Gradle release zip"):
        pinned_gradle(wrapper_properties(tmp_path))
