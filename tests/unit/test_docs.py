"""The README and docs/ stay true: links resolve, the layout matches the tree, the configuration
tables match daemon/config.py's key table, and the README stays a five-minute read."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKDOWN = [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_INLINE_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_TARGET = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# --- reading markdown as GitHub renders it ------------------------------------------------------


def prose_lines(text: str) -> Iterator[str]:
    """Lines outside fenced code blocks (a `# comment` in a shell block is not a heading)."""
    fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = match.group(1) if fence is None else None
            continue
        if fence is None:
            yield line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link text kept, lower case, punctuation dropped
    (except `-` and `_`), each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> Iterator[str]:
    """Targets of inline and reference links that are not URLs with a scheme."""
    for line in prose_lines(path.read_text(encoding="utf-8")):
        reference = _REFERENCE_TARGET.match(line)
        targets = [reference.group(1)] if reference else []
        targets += _INLINE_TARGET.findall(_CODE_SPAN.sub("``", line))
        yield from (target for target in targets if not _SCHEME.match(target))


def broken_links(path: Path) -> list[str]:
    """Each relative link of `path` whose file, or `#anchor` in a markdown file, is missing."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
    return broken


# --- links ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_to_files_and_headings(path: Path) -> None:
    assert broken_links(path) == []


def test_link_check_reports_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Secrets at rest\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n"
        "[ok](other.md#secrets-at-rest) [ok](#doc) [web](https://example.com/x#y)\n"
        "[gone](missing.md) [stale](other.md#retention) [self](#nowhere)\n"
        "```sh\n[in code](nowhere.md)\n```\n"
        "`[in a code span](nowhere.md)`\n",
        encoding="utf-8",
    )
    assert broken_links(doc) == [
        "missing.md: no such file",
        "other.md#retention: no heading with anchor #retention in other.md",
        "#nowhere: no heading with anchor #nowhere in doc.md",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Database roles (least privilege)", "database-roles-least-privilege"),
        ("Claiming, leases and wake-up", "claiming-leases-and-wake-up"),
        ("`[delivery]`", "delivery"),
        ("Asymmetric signatures (ed25519)", "asymmetric-signatures-ed25519"),
        ("A [linked](x.md) heading", "a-linked-heading"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_anchors_follow_githubs_slug_rules(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Notes\n\n## Notes\n\n```\n# Notes\n```\n", encoding="utf-8")
    assert anchors(doc) == {"notes", "notes-1"}


def test_readme_links_to_every_doc() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(README)}
    assert {doc.resolve() for doc in DOCS.glob("*.md")} <= linked


def test_readme_stays_a_five_minute_read() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, "move depth into docs/ (see docs/ by reader in STYLE)"


# --- layout ---------------------------------------------------------------------------------


def layout_paths() -> set[str]:
    """The paths in docs/design.md's Layout block; indentation nests a name under a directory."""
    lines = (DOCS / "design.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Layout")
    opening = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    paths: set[str] = set()
    parents: list[tuple[int, str]] = []  # (indent, directory path ending in "/")
    for line in lines[opening + 1 : closing]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + line.split()[0]
        paths.add(path)
        if path.endswith("/"):
            parents.append((indent, path))
    return paths


def test_layout_lists_only_paths_that_exist() -> None:
    missing = sorted(path for path in layout_paths() if not (ROOT / path).exists())
    assert missing == [], "docs/design.md's Layout lists paths that do not exist"


def test_layout_lists_every_daemon_module_and_package() -> None:
    daemon = ROOT / "daemon"
    modules = {p for p in daemon.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent for p in daemon.rglob("__init__.py") if p.parent != daemon}
    expected = {p.relative_to(ROOT).as_posix() for p in modules}
    expected |= {p.relative_to(ROOT).as_posix() + "/" for p in packages}
    assert sorted(expected - layout_paths()) == [], "add them to docs/design.md's Layout"


# --- configuration --------------------------------------------------------------------------


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_matches_the_key_table() -> None:
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert load_generator().updated(current) == current, "run `make docs`"


def test_configuration_doc_gives_every_example_key_its_environment_variable() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    example = tomllib.loads((ROOT / "config" / "webhookd.toml").read_text(encoding="utf-8"))
    missing = [
        f"{section}.{key}"
        for section, keys in example.items()
        for key in keys
        if not re.search(
            rf"^\| `{key}` \| [^|]+ \| `WEBHOOKD_{section.upper()}_{key.upper()}` \|",
            text.partition(f"### `[{section}]`")[2].partition("### ")[0],
            re.MULTILINE,
        )
    ]
    assert missing == []


def test_configuration_generator_refuses_a_key_without_a_meaning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = load_generator()
    monkeypatch.delitem(generator.MEANINGS, "delivery.concurrency")
    with pytest.raises(ValueError, match=r"no meaning for delivery\.concurrency"):
        generator.render_tables()
