"""The Journey: the tour's rules, journey.json's freshness, ``lguest journey``.

The rules (docs/journey.md):

- no two stops share a tag (chapter + number);
- every stop explains something and has code after it;
- every tag mentioned inside a comment ("see H:410") is a stop.

They are checked on the source tree when it is there (so messages point at
the sources being edited), otherwise on the journey.json the package ships.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import lguest
import pytest
from lguest import journey

ROOT = Path(__file__).resolve().parent.parent
BUILD_JOURNEY = ROOT / "scripts" / "build-journey"
COMMITTED = ROOT / "python" / "lguest" / "journey.json"
HAVE_SOURCES = (ROOT / "rust").is_dir() and BUILD_JOURNEY.is_file()
needs_sources = pytest.mark.skipif(not HAVE_SOURCES, reason="needs the lguest source tree")

#: Run from anywhere, whether or not the package is installed.
PACKAGE_ROOT = str(Path(lguest.__file__).resolve().parent.parent)


def lguest_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lguest", *args],
        check=False,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


@pytest.fixture(scope="module")
def tour() -> journey.Journey:
    return journey.extract(ROOT) if HAVE_SOURCES else journey.load()


# ---------------------------------------------------------------------------
# The rules, on the real tour.


def test_the_tour_has_stops(tour: journey.Journey) -> None:
    assert len(tour.stops) > 0
    assert tour.stops == tuple(sorted(tour.stops, key=journey.Stop.sort_key))


def test_no_two_stops_share_a_tag(tour: journey.Journey) -> None:
    assert journey.collisions(tour) == []


def test_every_stop_has_code_after_it(tour: journey.Journey) -> None:
    assert journey.missing_code(tour) == []


def test_every_stop_explains_something(tour: journey.Journey) -> None:
    assert journey.missing_text(tour) == []


def test_every_referenced_stop_exists(tour: journey.Journey) -> None:
    assert journey.dangling_references(tour) == []


@needs_sources
def test_committed_journey_json_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "journey.json"
    subprocess.run(
        [sys.executable, str(BUILD_JOURNEY), "--quiet", "--output", str(fresh)],
        check=True,
        timeout=120,
    )
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    new = fresh.read_text(encoding="utf-8")
    if committed != new:
        old_stops = {
            (s["tag"], s["file"], s["line"])
            for s in json.loads(committed or '{"stops": []}')["stops"]
        }
        new_stops = {(s["tag"], s["file"], s["line"]) for s in json.loads(new)["stops"]}
        pytest.fail(
            "python/lguest/journey.json is out of date: run scripts/build-journey "
            f"(added {sorted(new_stops - old_stops)}, gone {sorted(old_stops - new_stops)}; "
            "or stop texts and code changed)"
        )


def test_shipped_journey_loads() -> None:
    shipped = journey.load()
    assert shipped.stops
    assert {stop.chapter for stop in shipped.stops} <= set(journey.CHAPTERS)


def test_build_journey_check_mode(tmp_path: Path) -> None:
    if not HAVE_SOURCES:
        pytest.skip("needs the lguest source tree")
    out = tmp_path / "j.json"
    run = [sys.executable, str(BUILD_JOURNEY), "--quiet", "--output", str(out)]
    assert (
        subprocess.run([*run, "--check"], check=False, capture_output=True, timeout=120).returncode
        == 1
    )
    subprocess.run(run, check=True, timeout=120)
    assert (
        subprocess.run([*run, "--check"], check=False, capture_output=True, timeout=120).returncode
        == 0
    )


# ---------------------------------------------------------------------------
# The extractor and the rules, on small made-up trees.


def make_tree(root: Path, files: dict[str, str]) -> journey.Journey:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return journey.extract(root)


def test_rust_stop_continues_on_following_comment_lines(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": """
            //! Module docs, not part of the tour.
            //!
            // H:400 Every load and store
            // goes through here.
            //
            // Second paragraph.

            use std::sync::Arc;

            pub struct Tlb {
                entries: Vec<u32>,
            }

            pub fn other() {}
            """,
        },
    )
    (stop,) = tour.stops
    assert (stop.tag, stop.file, stop.line) == ("H:400", "rust/a.rs", 3)
    assert stop.text == "Every load and store\ngoes through here.\n\nSecond paragraph."
    assert stop.code == ("pub struct Tlb {", "    entries: Vec<u32>,", "}")
    assert stop.code_line == 10
    assert stop.language == "rust"
    assert not stop.truncated


def test_doc_comment_stop_and_function_body(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": """
            impl Cpu {
                /// H:410 The TLB miss path.
                pub fn translate(&mut self) -> u32 {
                    let a = 1;

                    // inside the body: kept
                    a + 1
                }

                /// Next function: not part of H:410's code.
                pub fn next(&self) {}
            }
            """,
        },
    )
    stop = next(s for s in tour.stops if s.tag == "H:410")
    assert stop.code == (
        "pub fn translate(&mut self) -> u32 {",
        "    let a = 1;",
        "",
        "    // inside the body: kept",
        "    a + 1",
        "}",
    )


def test_python_and_c_stops(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "python/lguest/m.py": '''
            """Docstring with L:999 is not a comment."""

            from __future__ import annotations

            # L:100 The layout.
            #
            #     a diagram line
            CONSTANT = 1


            def f() -> None:
                pass
            ''',
            "guest/main.c": """
            /*
             * main.c - header.
             *
             * G:100 Our journey begins
             * here (see L:100).
             */
            #include "x.h"

            void f(void)
            {
            \treturn;
            }
            """,
        },
    )
    g100, l100 = tour.stops
    assert (g100.tag, g100.line, g100.language) == ("G:100", 4, "c")
    assert g100.text == "Our journey begins\nhere (see L:100)."
    assert g100.code == ("void f(void)", "{", "        return;", "}")
    assert (l100.tag, l100.line) == ("L:100", 5)
    assert l100.text == "The layout.\n\n    a diagram line"
    assert l100.code == ("CONSTANT = 1",)
    assert [r.tag for r in tour.references] == ["L:100"]
    assert journey.problems(tour) == []


def test_colliding_tags_are_found(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": "// H:100 One.\nfn a() {}\n",
            "rust/b.rs": "// H:100 Two.\nfn b() {}\n",
        },
    )
    (message,) = journey.collisions(tour)
    assert "H:100" in message and "rust/a.rs:1" in message and "rust/b.rs:1" in message


def test_stop_without_code_is_found(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": """
            // H:100 Nothing follows this.

            // H:110 Two tags in a row: H:100 has no code of its own.
            fn a() {}
            """,
            "rust/b.rs": "fn b() {}\n// H:120 At the end of the file.\n",
        },
    )
    messages = journey.missing_code(tour)
    assert len(messages) == 2
    assert "H:100 (rust/a.rs:1)" in messages[0]
    assert "H:120 (rust/b.rs:2)" in messages[1]


def test_dangling_reference_is_found(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": "// H:100 See H:110 and H:999, not H:1xx.\nfn a() {}\n// H:110 Here.\nfn b() {}\n"
        },
    )
    assert journey.dangling_references(tour) == ["rust/a.rs:1 refers to H:999, which is not a stop"]


def test_tags_in_strings_are_not_stops(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "rust/a.rs": 'const S: &str = "// H:100 not a comment";\nconst R: &str = r#"/* H:110 */"#;\n',
            "guest/a.c": 'char *s = "/* G:100 nor this */";\n',
        },
    )
    assert tour.stops == ()
    assert tour.references == ()


def test_long_code_is_truncated(tmp_path: Path) -> None:
    body = "".join(f"    let x{i} = {i};\n" for i in range(20))
    tour = make_tree(tmp_path, {"rust/a.rs": f"// H:100 Long.\nfn a() {{\n{body}}}\n"})
    (stop,) = tour.stops
    assert len(stop.code) == journey.MAX_CODE_LINES
    assert stop.truncated
    assert "..." in journey.render_text(tour)


def test_reexport_counts_as_code(tmp_path: Path) -> None:
    tour = make_tree(tmp_path, {"rust/a.rs": "// H:100 Elsewhere.\npub use super::x::{a, b};\n"})
    assert tour.stops[0].code == ("pub use super::x::{a, b};",)


def test_json_round_trip(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {"rust/a.rs": "// H:100 One.\nfn a() {}\n", "guest/x.S": "/* G:100 Asm. */\n\tnop\n"},
    )
    assert journey.from_json(journey.to_json(tour)) == tour
    assert journey.to_json(journey.from_json(journey.to_json(tour))) == journey.to_json(tour)


# ---------------------------------------------------------------------------
# Rendering.


def test_prose_is_wrapped() -> None:
    text = (
        ("word " * 40).strip() + "\n\n- a list item " + "that goes on " * 10 + "\n\n    kept  as is"
    )
    lines = journey.wrap_prose(text, 80, indent="  ")
    assert all(len(line) <= 80 for line in lines)
    assert "      kept  as is" in lines
    assert any(line.startswith("  - a list item") for line in lines)
    assert any(line.startswith("    that goes on") for line in lines)


def test_markdown_fences_outlast_backticks_in_code() -> None:
    stop = journey.Stop("H", 100, "rust/a.rs", 1, "Text.", ('let s = "```";',), 2, False, "rust")
    md = journey.render_markdown(journey.Journey((stop,)))
    assert '````rust\nlet s = "```";\n````' in md


# ---------------------------------------------------------------------------
# The command.


def test_cli_prints_one_chapter_in_order() -> None:
    result = lguest_cmd("journey", "H")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Chapter H: The Host" in out
    assert "Chapter G" not in out and "Chapter L" not in out
    assert "\033[" not in out
    assert out.index("H:400  rust/cpu/mem.rs:") < out.index("H:410  rust/cpu/mem.rs:")
    # Every stop of the chapter, in tour order, each with its file:line.
    positions = [out.index(f"{s.tag}  {s.location}\n") for s in journey.load().chapter("H")]
    assert positions == sorted(positions)


def test_cli_whole_tour_goes_chapter_by_chapter() -> None:
    result = lguest_cmd("journey")
    assert result.returncode == 0, result.stderr
    present = [ch for ch in journey.CHAPTERS if journey.load().chapter(ch)]
    positions = [result.stdout.index(f"Chapter {ch}: ") for ch in present]
    assert positions == sorted(positions)
    assert "H:010" in result.stdout and "G:100" in result.stdout


def test_cli_chapter_is_case_insensitive() -> None:
    assert lguest_cmd("journey", "h").stdout == lguest_cmd("journey", "H").stdout


def test_cli_unknown_chapter_is_one_line_error() -> None:
    result = lguest_cmd("journey", "X")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("lguest: unknown chapter 'X'")


def test_cli_markdown() -> None:
    result = lguest_cmd("journey", "--markdown", "H")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("# The lguest Journey\n")
    assert "\n## H: The Host\n" in out
    assert "\n### H:400\n" in out and out.index("### H:400") < out.index("### H:410")
    assert "\n```rust\n" in out
    assert out.count("\n```") % 2 == 0


def _run_in_pty(*args: str, env: dict[str, str]) -> str:
    master, slave = pty.openpty()
    environ = dict(env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, environ.get("PYTHONPATH")]))
    with subprocess.Popen(
        [sys.executable, "-m", "lguest", *args], stdout=slave, stderr=slave, env=environ
    ) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a pty")
def test_cli_colors_only_on_a_tty_without_no_color() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert "\033[" in _run_in_pty("journey", "G", env=env)
    assert "\033[" not in _run_in_pty("journey", "G", env={**env, "NO_COLOR": "1"})


def test_block_comment_without_stars(tmp_path: Path) -> None:
    tour = make_tree(
        tmp_path,
        {
            "guest/a.lds": "/*\n\tG:100 Linker script,\n\tno stars.\n\t    indented\n*/\nSECTIONS\n{\n}\n"
        },
    )
    (stop,) = tour.stops
    assert stop.text == "Linker script,\nno stars.\n    indented"
    assert stop.language == "ld"
    assert stop.code == ("SECTIONS", "{", "}")


# ---------------------------------------------------------------------------
# The tour as a whole: every chapter is there, and so is every path.

DOCS_JOURNEY = ROOT / "docs" / "journey.md"


def test_every_chapter_has_stops(tour: journey.Journey) -> None:
    assert [ch for ch, n in tour.counts().items() if n == 0] == []


@pytest.mark.skipif(not DOCS_JOURNEY.is_file(), reason="needs docs/journey.md")
def test_the_paths_in_the_docs_are_stops(tour: journey.Journey) -> None:
    import re

    text = DOCS_JOURNEY.read_text(encoding="utf-8")
    section = text.split("## The paths", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\d+\. \*\*(.+?)\*\*:(.*?)(?=^\d+\. |\Z)", section, re.MULTILINE | re.DOTALL)
    assert len(paths) >= 7
    tags = {stop.tag for stop in tour.stops}
    for title, body in paths:
        named = [
            journey.format_tag(ch, int(n)) for ch, n in re.findall(r"\b([PGDLHM]):(\d+)", body)
        ]
        assert len(named) >= 5, title
        missing = [tag for tag in named if tag not in tags]
        assert missing == [], f"path {title!r} names stops that do not exist: {missing}"
