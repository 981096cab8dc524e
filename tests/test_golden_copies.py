"""The Kotlin and Swift ports replay byte-identical copies of the golden vectors (tests/golden/README.md)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
COPIES = {  # golden file → its copies in the ports' test resources
    "selector_golden.json": ("android_demo/selector/src/test/resources/selector_golden.json",
                             "ios_demo/Tests/Golden/selector_golden.json"),
    "preprocess_golden.json": ("android_demo/core/src/test/resources/preprocess_golden.json",
                               "ios_demo/Tests/Golden/preprocess_golden.json"),
}


@pytest.mark.parametrize("name, copy", [(n, c) for n, copies in COPIES.items() for c in copies],
                         ids=lambda v: v.split("/")[0] if "/" in v else v)
def test_port_copy_is_byte_identical(name, copy):
    source, copy = GOLDEN / name, ROOT / copy
    assert copy.is_file(), f"{copy.relative_to(ROOT)} is missing"
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}; after re-emitting it, copy it: "
        f"cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}")
