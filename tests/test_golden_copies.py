"""The Kotlin and Swift ports replay byte-identical copies of the selector's golden vectors."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "selector_golden.json"
COPIES = (
    ROOT / "android_demo" / "selector" / "src" / "test" / "resources" / "selector_golden.json",
    ROOT / "ios_demo" / "ResflexSelector" / "Tests" / "ResflexSelectorTests" / "Resources" / "selector_golden.json",
)


@pytest.mark.parametrize("copy", COPIES, ids=["kotlin", "swift"])
def test_port_copy_is_byte_identical(copy):
    assert copy.is_file(), f"{copy.relative_to(ROOT)} is missing"
    assert copy.read_bytes() == GOLDEN.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {GOLDEN.relative_to(ROOT)}; after `resflex select --emit-golden` "
        f"copy it: cp {GOLDEN.relative_to(ROOT)} {copy.relative_to(ROOT)}")
