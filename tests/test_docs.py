"""The generated documentation pages (scripts/gen_docs.py, the mkdocs hook): every command and every option of the
command line is in the reference, the nav lists every command page, and repository links are rewritten."""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
gen_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_docs)


@pytest.fixture(scope="module")
def pages():
    return gen_docs.generated_pages()


def test_every_option_of_every_command_is_in_its_page(pages):
    from resflex.cli.main import build_parser

    commands = gen_docs.subcommands(build_parser())
    assert len(commands) >= 13
    for name, _, parser in commands:
        page = pages[f"cli/{name}.md"]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, (name, flag)
            if not action.option_strings:
                assert f"`{action.metavar or action.dest}`" in page, (name, action.dest)
        assert f"[`{name}`]({name}.md)" in pages["cli/index.md"]


def test_mkdocs_nav_lists_every_generated_page(pages):
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in pages:
        assert re.search(rf"\b{re.escape(path)}\b", nav), f"mkdocs.yml nav lacks {path}"


def test_table_cells_escape_pipes_outside_code_only():
    assert gen_docs._cell("ideal | proxy") == "ideal \\| proxy"
    assert gen_docs._cell("`FILE|DIR` or a|b\n  more") == "`FILE|DIR` or a\\|b more"


def test_included_pages_rewrite_repository_links(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "README.md").write_text(
        "[golden](../tests/golden/README.md) [code](core/Main.kt) [site](https://example.org/x) [here](#top) "
        "![img](pic.png)")
    monkeypatch.setattr(gen_docs, "ROOT", tmp_path)
    page = gen_docs.included_page("demo/README.md", {"../tests/golden/README.md": "golden.md"})
    assert "[golden](golden.md)" in page
    assert "code (`demo/core/Main.kt`)" in page and "](core/Main.kt)" not in page
    assert "[site](https://example.org/x)" in page and "[here](#top)" in page and "![img](pic.png)" in page


def test_choices_start_their_own_sentence(pages):
    # `--sharing` help ends without a full stop; its choices used to run on ("in both modes Choices: size, speed").
    assert "in every mode. Choices: size, speed, auto." in pages["cli/convert.md"]
