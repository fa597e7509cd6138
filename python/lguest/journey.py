"""The Journey: lguest's sources, read in order.

The original lguest was written to be read.  Comments all over it carried
tags like ``H:400`` and ``make Beer`` printed them as one ordered tour.  This
module does the same for this project: ``lguest journey`` prints the tour.

A *stop* is a comment whose text begins with a tag: a chapter letter, a
colon and a number, such as ``// H:400`` in Rust, ``# L:100`` in Python or
``G:100`` at the start of a line inside a C ``/* ... */`` block.  The
chapters, in tour order, are ``CHAPTERS``; within a chapter stops go by
number.  The explanation runs from the tag to the end of its comment block
(or to the next tag in the same block), and the code it describes is taken
from the lines after the block by :func:`code_excerpt`'s rule.  A tag that
appears anywhere else in a comment ("see H:410") is a *reference*, and
every referenced stop must exist.

An installed wheel does not contain the Rust core's or the guest's sources,
so the tour ships as data: ``scripts/build-journey`` runs :func:`extract`
over a source tree and writes ``lguest/journey.json``, which :func:`load`
reads.  A test regenerates it and fails if the committed copy is stale.
This module imports nothing from the rest of the package, so the script can
load it straight from the source tree.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CHAPTERS",
    "FORMAT",
    "MAX_CODE_LINES",
    "SOURCES",
    "Journey",
    "Reference",
    "Stop",
    "code_excerpt",
    "extract",
    "from_json",
    "load",
    "problems",
    "render_markdown",
    "render_text",
    "to_json",
]

# P:020 How to read the tour.  The stops go chapter by chapter in this
# order, and by number inside a chapter; the numbers leave gaps so that new
# stops fit in.  Each stop explains why before the code shows how, and when
# the story moves to another file or another actor it says where it goes
# ("see H:410"): the tests make sure every such reference is a stop.
# Besides reading the chapters in order, follow the paths that cross them,
# each one thing happening end to end (docs/journey.md lists them):
#
# - how the Launcher lays out memory and loads a kernel (from L:100);
# - a guest's boot to its first hypercall (from L:145);
# - the interpreter's decode cache and lazy flags (from H:200);
# - a page fault, from the guest's access to the shadow fill (from G:350);
# - an interrupt, from a device thread to the guest's handler (from L:215);
# - a NOTIFY, through the eventfd map to a device thread (from D:210);
# - shutdown (from G:130).
#
# `lguest journey P` prints this chapter; `--markdown` makes a document.

#: The chapters in tour order, with their titles.
CHAPTERS: dict[str, str] = {
    "P": "Preparation",
    "G": "The Guest",
    "D": "The Drivers",
    "L": "The Launcher",
    "H": "The Host",
    "M": "Mastery",
}

#: Version of the journey.json layout.
FORMAT = 1

#: At most this many lines of code (comment and blank lines not counted) are
#: shown after a stop.
MAX_CODE_LINES = 12

#: Where the tour lives in a source tree: (directory, file name endings).
SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rust", (".rs",)),
    ("python/lguest", (".py",)),
    ("guest", (".c", ".h", ".S", ".s", ".lds", ".ld", "Makefile")),
)

#: Directories never searched (build output, caches).
_SKIP_DIRS = frozenset({"build", "target", "__pycache__", "node_modules"})

_CHAPTER_LETTERS = "".join(CHAPTERS)
#: A tag opening a comment's text: that comment is a stop.
_TAG_START = re.compile(rf"([{_CHAPTER_LETTERS}]):([0-9]+)(?!\w)")
#: A tag anywhere in a comment.
_TAG_ANYWHERE = re.compile(rf"(?<![\w:])([{_CHAPTER_LETTERS}]):([0-9]+)(?!\w)")

_LANGUAGES: dict[str, str] = {
    ".rs": "rust",
    ".py": "python",
    ".c": "c",
    ".h": "c",
    ".S": "asm",
    ".s": "asm",
    ".lds": "ld",
    ".ld": "ld",
}


def format_tag(chapter: str, number: int) -> str:
    """``H:400``; numbers below 100 keep three digits (``H:010``)."""
    return f"{chapter}:{number:03d}"


def language_of(path: str) -> str:
    """The Markdown fence language of a source file."""
    name = path.rsplit("/", 1)[-1]
    if name == "Makefile":
        return "make"
    return _LANGUAGES.get("." + name.rsplit(".", 1)[-1] if "." in name else "", "text")


@dataclass(frozen=True)
class Stop:
    """One stop of the tour: an explanation and the code it explains."""

    chapter: str
    number: int
    #: Path relative to the project root, with "/" separators.
    file: str
    #: 1-based line of the tag.
    line: int
    #: The explanation, comment markers and the tag itself removed.
    text: str
    #: The code after the comment, tabs expanded and common indentation removed.
    code: tuple[str, ...]
    #: 1-based line of the first line of ``code`` (0 if there is none).
    code_line: int
    #: True if the code goes on after what ``code`` shows.
    truncated: bool
    language: str

    @property
    def tag(self) -> str:
        return format_tag(self.chapter, self.number)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    def sort_key(self) -> tuple[int, int, str, int]:
        return (_chapter_index(self.chapter), self.number, self.file, self.line)


@dataclass(frozen=True)
class Reference:
    """A tag mentioned inside a comment (not opening it), e.g. "see H:410"."""

    chapter: str
    number: int
    file: str
    line: int

    @property
    def tag(self) -> str:
        return format_tag(self.chapter, self.number)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Journey:
    """Every stop in tour order, and every reference in file order."""

    stops: tuple[Stop, ...]
    references: tuple[Reference, ...] = ()

    def chapter(self, chapter: str) -> tuple[Stop, ...]:
        return tuple(stop for stop in self.stops if stop.chapter == chapter)

    def counts(self) -> dict[str, int]:
        """Number of stops per chapter, every chapter included."""
        return {ch: len(self.chapter(ch)) for ch in CHAPTERS}


def _chapter_index(chapter: str) -> int:
    return list(CHAPTERS).index(chapter)


# ---------------------------------------------------------------------------
# Reading comments out of source files.


@dataclass
class _Fragment:
    """The part of one physical line that is comment, markers stripped."""

    #: "//", "///", "//!", "#" for line comments; "/*" for block comments.
    kind: str
    text: str
    #: Block comments: a number shared by all lines of one comment.
    block: int = -1


@dataclass
class _Line:
    has_code: bool = False
    comments: list[_Fragment] = field(default_factory=list)


_CHAR_LITERAL = re.compile(
    r"'(?:\\(?:x[0-9a-fA-F]{1,2}|u\{[0-9a-fA-F]{1,6}\}|[0-7]{1,3}|.)|[^\\'\n])'"
)
_RAW_STRING = re.compile(r'b?r(#*)"')


def _drop_one_space(text: str) -> str:
    return text.removeprefix(" ")


def _scan_c_like(source: str, *, rust: bool) -> list[_Line]:
    """Comments and code of Rust, C, assembler (through cpp) or a linker script."""
    lines = [_Line() for _ in source.split("\n")]
    n = len(source)
    i = 0
    row = 0
    blocks = 0
    while i < n:
        c = source[i]
        if c == "\n":
            row += 1
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            raw = source[i:end]
            if raw.startswith("///") and not raw.startswith("////"):
                kind = "///"
            elif raw.startswith("//!"):
                kind = "//!"
            else:
                kind = "//"
            text = _drop_one_space(raw[len(kind) :]).rstrip()
            lines[row].comments.append(_Fragment(kind, text))
            i = end
        elif source.startswith("/*", i):
            blocks += 1
            depth = 1
            j = i + 2
            while j < n and depth:
                if rust and source.startswith("/*", j):
                    depth += 1
                    j += 2
                elif source.startswith("*/", j):
                    depth -= 1
                    j += 2
                else:
                    j += 1
            body = source[i + 2 : j - 2 if depth == 0 else j]
            pieces = body.split("\n")
            if pieces[0].startswith(("*", "!")):
                pieces[0] = pieces[0][1:]
            if any(p.lstrip().startswith("*") for p in pieces[1:] if p.strip()):
                # The usual style: " * text" on every line.
                pieces[1:] = [
                    p.lstrip()[1:] if p.lstrip().startswith("*") else p for p in pieces[1:]
                ]
                pieces = [_drop_one_space(p) for p in pieces]
            else:
                # No stars: the lines' common indentation is not part of the text.
                rest = textwrap.dedent("\n".join(p.expandtabs(8) for p in pieces[1:]))
                pieces = [_drop_one_space(pieces[0]), *rest.split("\n")]
            for k, piece in enumerate(pieces):
                lines[row + k].comments.append(_Fragment("/*", piece.rstrip(), blocks))
            row += body.count("\n")
            i = j
        elif c == '"' or (
            rust
            and c in "rb"
            and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_"))
            and _RAW_STRING.match(source, i)
        ):
            raw_match = _RAW_STRING.match(source, i) if c != '"' else None
            if raw_match is not None:
                closing = '"' + raw_match.group(1)
                j = source.find(closing, raw_match.end())
                j = n if j < 0 else j + len(closing)
            else:
                j = i + 1
                while j < n and source[j] != '"':
                    j += 2 if source[j] == "\\" else 1
                j = min(j + 1, n)
            for r in range(row, row + source.count("\n", i, j) + 1):
                lines[r].has_code = True
            row += source.count("\n", i, j)
            i = j
        elif c == "'" and (m := _CHAR_LITERAL.match(source, i)):
            lines[row].has_code = True
            i = m.end()
        else:
            if not c.isspace():
                lines[row].has_code = True
            i += 1
    return lines


def _scan_hash_lines(source: str) -> list[_Line]:
    """Whole-line ``#`` comments (Makefiles; Python that does not tokenize)."""
    lines = []
    for raw in source.split("\n"):
        line = _Line()
        stripped = raw.lstrip()
        if stripped.startswith("#"):
            line.comments.append(_Fragment("#", _drop_one_space(stripped[1:]).rstrip()))
        elif stripped:
            line.has_code = True
        lines.append(line)
    return lines


_NOT_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
)


def _scan_python(source: str) -> list[_Line]:
    lines = [_Line() for _ in source.split("\n")]
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = _drop_one_space(tok.string[1:]).rstrip()
                lines[tok.start[0] - 1].comments.append(_Fragment("#", text))
            elif tok.type not in _NOT_CODE:
                for r in range(tok.start[0] - 1, min(tok.end[0], len(lines))):
                    lines[r].has_code = True
    except (tokenize.TokenError, SyntaxError):
        return _scan_hash_lines(source)
    return lines


def _scan(source: str, language: str) -> list[_Line]:
    if language == "python":
        return _scan_python(source)
    if language == "make":
        return _scan_hash_lines(source)
    return _scan_c_like(source, rust=language == "rust")


# ---------------------------------------------------------------------------
# Stops and the code after them.


def _indent(raw: str) -> int:
    return len(raw) - len(raw.lstrip())


_RUST_IMPORT = re.compile(r"use\s|extern\s+crate\s")
_PY_IMPORT = re.compile(r"(import|from)\s")
_C_LABEL_OR_DIRECTIVE = re.compile(r"#|[A-Za-z_.$][\w.$]*:")


def _skip_import(src: Sequence[str], i: int, language: str) -> int | None:
    """If line ``i`` starts an import, the index of the line after it."""
    stripped = src[i].strip()
    if language == "rust" and _RUST_IMPORT.match(stripped):
        while i < len(src) and not src[i].rstrip().endswith(";"):
            i += 1
        return i + 1
    if language == "python" and _PY_IMPORT.match(stripped):
        depth = 0
        while i < len(src):
            depth += src[i].count("(") - src[i].count(")")
            if depth <= 0 and not src[i].rstrip().endswith("\\"):
                break
            i += 1
        return i + 1
    if language in ("c", "asm") and re.match(r"#\s*include\b", stripped):
        return i + 1
    return None


def _starts_stop(line: _Line) -> bool:
    return any(_TAG_START.match(f.text.lstrip()) for f in line.comments)


def code_excerpt(
    src: Sequence[str],
    info: Sequence[_Line],
    start: int,
    language: str,
    *,
    skip_imports: bool = True,
) -> tuple[int, list[str], bool]:
    """The code a stop describes: (0-based first line, lines, truncated).

    The rule, applied to the source lines from ``start`` (the line after the
    stop's comment block):

    1. Skip blank lines and imports (Rust ``use``/``extern crate`` but not
       ``pub use``, Python ``import``/``from``, C ``#include``).  The first
       line left is the first line of the excerpt; its indentation is the
       *base*.  (If nothing but imports follows, they are the excerpt.)
    2. Take lines until one of these, which is not taken:
       - a blank line after which the next non-blank line is indented no
         deeper than the base (the end of the item: a function, a struct, a
         paragraph of statements), or the end of the file;
       - a line indented less than the base (the closing brace or dedent of
         the enclosing block; in C and assembler labels and preprocessor
         lines do not count);
       - a comment line that opens another stop;
       - once some code was taken, a comment line at the base indentation
         or shallower (the start of the next explanation);
       - a line of code beyond the first ``MAX_CODE_LINES`` (the excerpt is
         then *truncated*).
       Comment and blank lines inside the excerpt are kept but not counted.
    3. Drop trailing blank and comment lines, expand tabs, remove the common
       indentation.  An excerpt without a single line of code is empty.
    """
    n = len(src)
    i = start
    while i < n:
        if not src[i].strip():
            i += 1
            continue
        if info[i].has_code and skip_imports:
            after = _skip_import(src, i, language)
            if after is not None:
                i = after
                continue
        break
    if i >= n:
        if skip_imports:
            return code_excerpt(src, info, start, language, skip_imports=False)
        return 0, [], False
    base = _indent(src[i].expandtabs(8))
    taken: list[str] = []
    comment_only: list[bool] = []
    code_lines = 0
    truncated = False
    j = i
    while j < n:
        raw = src[j].expandtabs(8)
        stripped = raw.strip()
        if not stripped:
            k = j + 1
            while k < n and not src[k].strip():
                k += 1
            if k >= n or _indent(src[k].expandtabs(8)) <= base:
                break
            taken.append("")
            comment_only.append(True)
            j += 1
            continue
        is_comment = not info[j].has_code
        if is_comment and _starts_stop(info[j]):
            break
        if (
            j > i
            and _indent(raw) < base
            and not (language in ("c", "asm") and _C_LABEL_OR_DIRECTIVE.match(stripped))
        ):
            break
        if is_comment and code_lines and _indent(raw) <= base:
            break
        if not is_comment:
            if code_lines == MAX_CODE_LINES:
                truncated = True
                break
            code_lines += 1
        taken.append(raw.rstrip())
        comment_only.append(is_comment)
        j += 1
    while taken and comment_only[-1]:
        taken.pop()
        comment_only.pop()
    if not code_lines:
        if skip_imports:
            return code_excerpt(src, info, start, language, skip_imports=False)
        return 0, [], False
    return i, textwrap.dedent("\n".join(taken)).split("\n"), truncated


def _comment_group(info: Sequence[_Line], row: int, fragment: _Fragment) -> int:
    """The last row of the comment block that ``fragment`` (on ``row``) belongs to."""
    if fragment.kind == "/*":
        last = row
        while last + 1 < len(info) and any(
            f.block == fragment.block for f in info[last + 1].comments
        ):
            last += 1
        return last
    if info[row].has_code:
        return row
    last = row
    while (
        last + 1 < len(info)
        and not info[last + 1].has_code
        and len(info[last + 1].comments) == 1
        and info[last + 1].comments[0].kind == fragment.kind
    ):
        last += 1
    return last


def _explanation(texts: list[str], tag_end: int) -> str:
    lines = [texts[0].lstrip()[tag_end:].strip(), *(t.expandtabs(8) for t in texts[1:])]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


def _file_stops(rel: str, source: str) -> tuple[list[Stop], list[Reference]]:
    language = language_of(rel)
    src = source.split("\n")
    info = _scan(source, language)
    stops: list[Stop] = []
    references: list[Reference] = []
    for row, line in enumerate(info):
        for fragment in line.comments:
            stripped = fragment.text.lstrip()
            opening = _TAG_START.match(stripped)
            for m in _TAG_ANYWHERE.finditer(stripped):
                if opening is None or m.start() != 0:
                    references.append(Reference(m.group(1), int(m.group(2)), rel, row + 1))
            if opening is None:
                continue
            last = _comment_group(info, row, fragment)
            texts = [stripped]
            for r in range(row + 1, last + 1):
                piece = next(
                    (
                        f
                        for f in info[r].comments
                        if f.kind == fragment.kind and f.block == fragment.block
                    ),
                    None,
                )
                if piece is None:
                    continue
                if _TAG_START.match(piece.text.lstrip()):
                    break
                texts.append(piece.text)
            first, code, truncated = code_excerpt(src, info, last + 1, language)
            stops.append(
                Stop(
                    chapter=opening.group(1),
                    number=int(opening.group(2)),
                    file=rel,
                    line=row + 1,
                    text=_explanation(texts, opening.end()),
                    code=tuple(code),
                    code_line=first + 1 if code else 0,
                    truncated=truncated,
                    language=language,
                )
            )
    return stops, references


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file the tour is read from, sorted."""
    found: list[tuple[str, Path]] = []
    for directory, endings in SOURCES:
        base = root / directory
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            rel_parts = path.relative_to(root).parts
            if any(p in _SKIP_DIRS or p.startswith(".") for p in rel_parts[:-1]):
                continue
            if path.is_file() and path.name.endswith(endings):
                found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)


def extract(root: Path | str) -> Journey:
    """Read the tour out of the source tree at ``root`` (the project root)."""
    stops: list[Stop] = []
    references: list[Reference] = []
    for rel, path in source_files(Path(root)):
        source = path.read_text(encoding="utf-8", errors="replace")
        file_stops, file_refs = _file_stops(rel, source)
        stops += file_stops
        references += file_refs
    return Journey(
        stops=tuple(sorted(stops, key=Stop.sort_key)),
        references=tuple(sorted(references, key=lambda r: (r.file, r.line, r.tag))),
    )


# ---------------------------------------------------------------------------
# journey.json


def to_json(journey: Journey) -> str:
    """The journey.json text: stable, so regenerating it changes nothing."""
    data = {
        "format": FORMAT,
        "generated_by": "scripts/build-journey",
        "chapters": CHAPTERS,
        "stops": [
            {
                "tag": stop.tag,
                "chapter": stop.chapter,
                "number": stop.number,
                "file": stop.file,
                "line": stop.line,
                "language": stop.language,
                "text": stop.text,
                "code_line": stop.code_line,
                "code": list(stop.code),
                "truncated": stop.truncated,
            }
            for stop in journey.stops
        ],
        "references": [
            {"tag": r.tag, "chapter": r.chapter, "number": r.number, "file": r.file, "line": r.line}
            for r in journey.references
        ],
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def from_json(text: str) -> Journey:
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"journey.json has format {data.get('format')!r}, expected {FORMAT}")
    stops = tuple(
        Stop(
            chapter=str(s["chapter"]),
            number=int(s["number"]),
            file=str(s["file"]),
            line=int(s["line"]),
            text=str(s["text"]),
            code=tuple(str(c) for c in s["code"]),
            code_line=int(s["code_line"]),
            truncated=bool(s["truncated"]),
            language=str(s["language"]),
        )
        for s in data["stops"]
    )
    references = tuple(
        Reference(str(r["chapter"]), int(r["number"]), str(r["file"]), int(r["line"]))
        for r in data["references"]
    )
    return Journey(tuple(sorted(stops, key=Stop.sort_key)), references)


def load() -> Journey:
    """The tour shipped with this package (``lguest/journey.json``)."""
    text = resources.files("lguest").joinpath("journey.json").read_text(encoding="utf-8")
    return from_json(text)


# ---------------------------------------------------------------------------
# The rules.


def collisions(journey: Journey) -> list[str]:
    """One message per tag used by more than one stop."""
    seen: dict[tuple[str, int], list[Stop]] = {}
    for stop in journey.stops:
        seen.setdefault((stop.chapter, stop.number), []).append(stop)
    return [
        f"{same[0].tag} is used {len(same)} times: " + ", ".join(s.location for s in same)
        for same in seen.values()
        if len(same) > 1
    ]


def missing_code(journey: Journey) -> list[str]:
    return [
        f"{stop.tag} ({stop.location}) has no code after it"
        for stop in journey.stops
        if not stop.code
    ]


def missing_text(journey: Journey) -> list[str]:
    return [
        f"{stop.tag} ({stop.location}) has no explanation"
        for stop in journey.stops
        if not stop.text.strip()
    ]


def dangling_references(journey: Journey) -> list[str]:
    tags = {(stop.chapter, stop.number) for stop in journey.stops}
    return [
        f"{ref.location} refers to {ref.tag}, which is not a stop"
        for ref in journey.references
        if (ref.chapter, ref.number) not in tags
    ]


# M:900 The last exercise is the one lguest set its readers: when you have
# changed something, leave a stop behind for the next reader.  Put it where
# it belongs in the order, explain why before how, refer to the stops your
# path crosses, and run scripts/build-journey: these are the rules it and
# the tests check.  Thank you for reading.
def problems(journey: Journey) -> list[str]:
    """Everything wrong with the tour, one message per problem."""
    return [
        *collisions(journey),
        *missing_code(journey),
        *missing_text(journey),
        *dangling_references(journey),
    ]


# ---------------------------------------------------------------------------
# Printing.

_BULLET = re.compile(r"([-*+]|[0-9]+[.)])\s+")
_BOLD = "\033[1m"
_CYAN = "\033[36m"
_YELLOW = "\033[33m"
_RESET = "\033[0m"


def _paragraphs(text: str) -> Iterator[list[str]]:
    paragraph: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            yield paragraph
            paragraph = []
    if paragraph:
        yield paragraph


_SENTENCE_END = re.compile(r"[.!?][)\"']?$")


def _join(lines: Iterable[str]) -> str:
    """Join lines into one, keeping the sources' two spaces after a sentence."""
    out = ""
    for line in lines:
        if out:
            out += "  " if _SENTENCE_END.search(out) else " "
        out += line
    return out


def wrap_prose(text: str, width: int, indent: str = "") -> list[str]:
    """Reflow ``text`` to ``width`` columns.

    Paragraphs are separated by blank lines.  A paragraph of list items
    ("- ", "* ", "1. ") is reflowed item by item with a hanging indent; a
    paragraph with any other indented line (a diagram, a table) is kept as
    it is; anything else is reflowed as one paragraph.
    """
    out: list[str] = []
    for paragraph in _paragraphs(text):
        if out:
            out.append("")
        first = paragraph[0].lstrip()
        if _BULLET.match(first):
            items: list[tuple[str, list[str]]] = []
            for line in paragraph:
                bullet = _BULLET.match(line.lstrip())
                if bullet and _indent(line) <= _indent(paragraph[0]):
                    lead = " " * _indent(line) + bullet.group(0)
                    items.append((lead, [line.lstrip()[bullet.end() :]]))
                elif items:
                    items[-1][1].append(line.strip())
            for lead, words in items:
                out += textwrap.wrap(
                    _join(words),
                    width,
                    initial_indent=indent + lead,
                    subsequent_indent=indent + " " * len(lead),
                    break_on_hyphens=False,
                    break_long_words=False,
                ) or [indent + lead.rstrip()]
        elif any(line[:1].isspace() for line in paragraph):
            out += [indent + line for line in paragraph]
        else:
            out += textwrap.wrap(
                _join(line.strip() for line in paragraph),
                width,
                initial_indent=indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
                break_long_words=False,
            )
    return out


def _chapters_of(stops: Iterable[Stop], only: str | None) -> list[tuple[str, list[Stop]]]:
    by_chapter: dict[str, list[Stop]] = {ch: [] for ch in CHAPTERS}
    for stop in stops:
        by_chapter[stop.chapter].append(stop)
    return [
        (ch, sorted(chapter_stops, key=Stop.sort_key))
        for ch, chapter_stops in by_chapter.items()
        if only is None or ch == only
    ]


def render_text(
    journey: Journey, chapter: str | None = None, *, width: int = 80, color: bool = False
) -> str:
    """The tour for a terminal: per stop its tag and place, the prose, the code."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    out: list[str] = []
    for ch, stops in _chapters_of(journey.stops, chapter):
        if chapter is None and not stops:
            continue
        title = f"Chapter {ch}: {CHAPTERS[ch]}"
        if out:
            out.append("")
        out += [paint(_BOLD, title), paint(_BOLD, "=" * len(title)), ""]
        if not stops:
            out += ["  (no stops yet)", ""]
        for stop in stops:
            out.append(f"{paint(_BOLD + _YELLOW, stop.tag)}  {paint(_CYAN, stop.location)}")
            out.append("")
            out += wrap_prose(stop.text, width, indent="  ")
            if stop.code:
                out.append("")
                out += [("      " + line).rstrip() for line in stop.code]
                if stop.truncated:
                    out.append("      ...")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _fence(code: Sequence[str]) -> str:
    longest = max((len(m) for line in code for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(journey: Journey, chapter: str | None = None) -> str:
    """The tour as Markdown: a heading per chapter and per stop, fenced code."""
    out = ["# The lguest Journey", ""]
    out.append(
        "lguest's sources, read in order.  Generated by `lguest journey --markdown`"
        " from the tagged comments in the sources; see docs/journey.md."
    )
    for ch, stops in _chapters_of(journey.stops, chapter):
        if chapter is None and not stops:
            continue
        out += ["", f"## {ch}: {CHAPTERS[ch]}"]
        if not stops:
            out += ["", "_No stops yet._"]
        for stop in stops:
            out += ["", f"### {stop.tag}", "", f"`{stop.location}`", "", stop.text]
            if stop.code:
                fence = _fence(stop.code)
                code = list(stop.code) + (["..."] if stop.truncated else [])
                out += ["", fence + stop.language, *code, fence]
    return "\n".join(out) + "\n"
