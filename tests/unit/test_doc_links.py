# Documents refer only to files in the repository: links and paths in .md, conf/ and code comments.
from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = r"md|py|ya?ml|conf|toml|sh|service|json|cfg|ini|txt|xml|csv|pem|key"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
INLINE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(rf"^(?:\.{{1,2}}/)*[\w@.-]+(?:/[\w@.*{{}},-]+)+\.(?:{EXTENSIONS})(?:::\w+)?$")
PARENT = re.compile(r"(?<![\w.])\.\./[\w@./-]+")  # ../anything, anywhere
MD_NAME = re.compile(r"(?<![\w/.-])([A-Za-z][\w-]*\.md)\b")  # a bare document name


def repository_files() -> list[Path]:
    """Tracked and new (not ignored) files: what a commit of the working tree holds."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def expand(path: str) -> list[str]:
    """Brace alternatives (``a/{b,c}.py``) spelled out."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def exists(reference: str, source: Path) -> bool:
    """``reference`` names a file or folder inside the repository, read relative to the
    document's folder or to the repository root (globs allowed)."""
    reference = reference.split("::", 1)[0].split("#", 1)[0]
    for candidate in expand(reference):
        for base in (source.parent, ROOT):
            target = (base / candidate).resolve()
            if not target.is_relative_to(ROOT):
                continue  # outside the repository: not a file of it
            if "*" in candidate:
                if any(target.parent.glob(target.name)):
                    return True
            elif target.exists():
                return True
    return False


def prose_and_code(text: str) -> tuple[str, str]:
    """A Markdown text split into its prose and its fenced code blocks."""
    prose, code = [], []
    for i, chunk in enumerate(re.split(r"^ *```.*$", text, flags=re.M)):
        (code if i % 2 else prose).append(chunk)
    return "\n".join(prose), "\n".join(code)


def references(path: Path) -> list[str]:
    """The file references of one document (or comments of one source file)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":  # its comments and docstrings (code may hold "../" on purpose)
        comments = "\n".join(re.findall(r"#.*$|\"\"\"(?:.|\n)*?\"\"\"", text, flags=re.M))
        return [*PARENT.findall(comments), *MD_NAME.findall(comments)]
    found = PARENT.findall(text)
    prose = prose_and_code(text)[0] if path.suffix == ".md" else text
    found += [m for m in LINK.findall(prose) if not re.match(r"^[a-z]+:|^#", m)]
    for inline in INLINE.findall(prose):
        found += [word for word in inline.split() if PATH.match(word)]
    found += MD_NAME.findall(prose)
    return found


def documents() -> list[Path]:
    files = repository_files()
    return [
        f for f in files
        if f.suffix == ".md" or f.is_relative_to(ROOT / "conf")
        or (f.suffix == ".py" and not f.is_relative_to(ROOT / "tests" / "unit"))
    ]  # fmt: skip


def missing(path: Path) -> list[str]:
    names = {f.name for f in repository_files()}
    out = []
    for reference in references(path):
        bare = "/" not in reference
        if (bare and reference in names) or (not bare and exists(reference, path)):
            continue
        out.append(reference)
    return out


def test_documents_refer_only_to_files_in_the_repository() -> None:
    broken = {str(path.relative_to(ROOT)): refs for path in documents() if (refs := missing(path))}
    assert broken == {}


def test_the_check_finds_what_was_there_before() -> None:
    """The references issue 16 found (and a few others) are caught."""
    doc = ROOT / "docs" / "example-for-the-test.md"
    text = (
        "The agreed design is `../shared/ARCHITECTURE.md`.\n"
        "free (SCENARIOS.md section 4). See [the card](../card.md), `docs/nope.md`,\n"
        "`gatewayctl apply -f conf/nope.yaml`, and [billing](billing.md) which exists.\n"
        "Errors carry their wire answer (ARCHITECTURE.md rule 4).\n"
    )
    doc.write_text(text, encoding="utf-8")
    try:
        assert set(missing(doc)) == {
            "../shared/ARCHITECTURE.md", "../card.md", "SCENARIOS.md", "ARCHITECTURE.md",
            "docs/nope.md", "conf/nope.yaml",
        }  # fmt: skip
    finally:
        doc.unlink()
