"""MkDocs hook (mkdocs.yml `hooks:`): the pages that are generated at build time, never written by hand.

- `cli/<command>.md`, one per `resflex` subcommand, from the argparse parsers of `resflex.cli.main.build_parser`;
- the sources mkdocstrings reads (`on_config`, below);
- `android.md`, `ios.md`, `golden.md`, `benchmarks-results.md`: the demo READMEs, the golden-vector formats and
  bench/RESULTS.md, read from where they live in the repository, with their links into the repository rewritten.

Nothing is written into docs/: the pages exist only in the build (`mkdocs build --strict` checks their links).
`python scripts/gen_docs.py DIR` writes the same pages into DIR to look at them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parent.parent

# Repository files rendered as pages: source → (page, {link target in the source: page it becomes}).
INCLUDED = {
    "android_demo/README.md": ("android.md", {"../tests/golden/README.md": "golden.md"}),
    "ios_demo/README.md": ("ios.md", {"../tests/golden/README.md": "golden.md"}),
    "tests/golden/README.md": ("golden.md", {}),
    "bench/RESULTS.md": ("benchmarks-results.md", {}),
}
# The hand-written guide page that explains each command (the generated page links to it).
GUIDE = {"train": "guide/train.md", "eval": "guide/train.md#eval", "adapt": "guide/train.md",
         "import": "guide/import.md", "search": "guide/convert.md#resizable-search-and-convert",
         "convert": "guide/convert.md", "inspect": "guide/convert.md", "report": "guide/profile.md",
         "profile": "guide/profile.md", "macs": "guide/profile.md", "select": "guide/select.md",
         "simulate": "guide/simulate.md", "models": "guide/your-network.md"}


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order `resflex --help` lists them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in action.choices.items()]


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped outside code spans (Python-Markdown keeps those as they are)."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`" + (" (optional)" if action.nargs == "?" else "")
    metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
    return ", ".join(f"`{s}{'' if s.startswith('--no-') else metavar}`" for s in action.option_strings)


def command_page(name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    """The reference page of one subcommand: usage, then every argument with its default and help."""
    formatter = argparse.HelpFormatter(parser.prog)  # the plain one: defaults get their own column here
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action.choices, dict):
            sentence_end = "" if not text or text.rstrip()[-1] in ".:;!?" else "."
            text += f"{sentence_end} Choices: {', '.join(map(str, action.choices))}."
        default = "required" if action.required else \
            "" if action.default in (None, argparse.SUPPRESS) or not action.option_strings else f"`{action.default}`"
        rows.append(f"| {_flags(action)} | {_cell(default)} | {_cell(text)} |")
    usage = parser.format_usage().removeprefix("usage: ").strip()
    guide = GUIDE.get(name)
    return "\n".join([
        f"# resflex {name}", "", f"{summary[:1].upper()}{summary[1:]}.", "",
        "Generated from the command's argparse parser (`resflex.cli.main.build_parser`); "
        f"`resflex {name} --help` prints the same.", "",
        "```text", usage, "```", "",
        "| argument | default | meaning |", "|---|---|---|", *rows, "",
        *([f"What it does, with examples: [guide]({'../' + guide}).", ""] if guide else [])])


def cli_index(commands) -> str:
    rows = [f"| [`{name}`]({name}.md) | {_cell(summary)} |" for name, summary, _ in commands]
    return "\n".join(["# Command line", "", "One command, `resflex`, with one subcommand per step; each only builds "
                      "a config and calls a library function (the [Python API](../python-api.md)). Booleans come "
                      "as `--x/--no-x`. These pages are generated from the argparse parsers.", "",
                      "| command | what it does |", "|---|---|", *rows, ""])


def included_page(source: str, links: dict[str, str]) -> str:
    """A repository Markdown file as a docs page: its relative links become docs pages (`links`) or plain text
    naming the repository path (the site does not serve source files)."""
    base = Path(source).parent
    text = (ROOT / source).read_text(encoding="utf-8")

    def relink(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        if target in links:
            return f"[{label}]({links[target]})"
        return f"{label} (`{os.path.normpath(base / target)}`)"

    return f"<!-- generated from {source} by scripts/gen_docs.py -->\n" + \
        re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", relink, text)


def generated_pages() -> dict[str, str]:
    """Every generated page: docs-relative path → Markdown."""
    from resflex.cli.main import build_parser

    commands = subcommands(build_parser())
    pages = {f"cli/{name}.md": command_page(name, summary, p) for name, summary, p in commands}
    pages["cli/index.md"] = cli_index(commands)
    for source, (page, links) in INCLUDED.items():
        pages[page] = included_page(source, links)
    return pages


API_SOURCES = ROOT / "build" / "docs-src"  # mkdocs.yml: mkdocstrings' `paths`


@event_priority(100)  # before mkdocstrings reads its `paths`
def on_config(config):
    """MkDocs event: give mkdocstrings a `resflex/` folder to read the sources from. The installed package maps
    top-level folders under `resflex.` (pyproject.toml), which griffe cannot follow; `build/docs-src/resflex/`
    holds one relative symlink per mapped folder (build/ is ignored by git)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    package = API_SOURCES / "resflex"
    package.mkdir(parents=True, exist_ok=True)
    for name, folder in mapping.items():
        link = package / name.removeprefix("resflex.")
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "..", folder))
    return config


def on_files(files, config):
    """MkDocs event: add the generated pages to the build."""
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs-generated")
    for path, content in generated_pages().items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(content, encoding="utf-8")
    print(f"{len(generated_pages())} pages in {out}")
