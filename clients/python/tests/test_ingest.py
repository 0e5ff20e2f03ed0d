"""tome_client.ingest: the same files, sections and chapters as the C++ CLI (no server)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tome_client import ingest  # noqa: E402


class GitignoreTest(unittest.TestCase):
    def test_glob(self):
        g = ingest.glob_match
        self.assertTrue(g("*.o", "main.o"))
        self.assertFalse(g("*.o", "src/main.o"))
        self.assertTrue(g("**/foo", "a/b/foo"))
        self.assertTrue(g("a/**/b", "a/b"))
        self.assertTrue(g("a/**/b", "a/x/y/b"))
        self.assertTrue(g("abc/**", "abc/x/y"))
        self.assertFalse(g("abc/**", "abc"))
        self.assertTrue(g("[!a-c]x", "dx"))
        self.assertFalse(g("a?b", "a/b"))
        self.assertTrue(g("\\*.txt", "*.txt"))

    def test_rules(self):
        m = ingest.GitignoreMatcher()
        m.add_rules("", "# c\n*.log\n!keep.log\nbuild/\n/TODO\ndoc/*.html\n")
        m.add_rules("lib", "!x.log\n")
        self.assertTrue(m.ignored("a/debug.log", False))
        self.assertFalse(m.ignored("keep.log", False))
        self.assertTrue(m.ignored("build", True))
        self.assertFalse(m.ignored("build", False))
        self.assertTrue(m.ignored("TODO", False))
        self.assertFalse(m.ignored("src/TODO", False))
        self.assertTrue(m.ignored("doc/a.html", False))
        self.assertFalse(m.ignored("src/doc/a.html", False))
        self.assertFalse(m.ignored("lib/x.log", False))
        self.assertTrue(m.ignored("x.log", False))


class ChaptersTest(unittest.TestCase):
    def test_headings(self):
        h = lambda line: (ingest.chapter_heading(line.encode()) or ("<none>",))[0]
        self.assertEqual(h("CHAPTER XII"), "CHAPTER XII")
        self.assertEqual(h("Chapter 3: Title"), "Chapter 3: Title")
        self.assertEqual(h("BOOK II"), "BOOK II")
        self.assertEqual(h("## Setup ##"), "Setup")
        self.assertEqual(h("Chapter 3 describes it."), "<none>")
        self.assertEqual(h("### deep"), "<none>")

    def test_detect(self):
        filler = b"x" * 300 + b"\n"
        text = (b"Contents\nCHAPTER I. A\nCHAPTER II. B\n\nCHAPTER I. A\n" + filler +
                b"BOOK TWO\n\nCHAPTER II. B\n" + filler)
        chapters = ingest.detect_chapters(text)
        self.assertEqual([c[0] for c in chapters], ["CHAPTER I. A", "BOOK TWO / CHAPTER II. B"])
        self.assertEqual(chapters[1][1], text.index(b"BOOK TWO"))
        self.assertEqual(ingest.detect_chapters(b"Chapter 1\n" + filler), [])
        spans = ingest.book_spans(text)
        self.assertEqual(spans[0][:2], ("", 0))
        self.assertEqual(spans[-1][2], len(text))

    def test_chapter_header(self):
        self.assertEqual(ingest.chapter_section_text("Chapter 2", b"It rained.\n"),
                         b"=== Chapter: Chapter 2 ===\nIt rained.\n")
        self.assertEqual(ingest.chapter_section_text("", b"Preface.\n"), b"Preface.\n")

    def test_pieces(self):
        out = list(ingest.pieces([("a", b"0123456789"), ("", b"")], piece_bytes=4))
        self.assertEqual(out, [("a", b"0123"), ("", b"4567"), ("", b"89"), ("", b"")])


def make_tree(root: Path) -> None:
    files = {
        ".gitignore": b"*.o\nbuild/\n/secret.txt\n",
        "main.c": b"int main() { return 0; }\n",
        "main.o": b"obj",
        "secret.txt": b"s\n",
        "build/out.c": b"x\n",
        "src/.gitignore": b"gen_*\n!gen_keep.c\n",
        "src/gen_a.c": b"a\n",
        "src/gen_keep.c": b"k",
        "src/secret.txt": "caf\u00e9\n".encode(),
        "a-b.txt": b"dash\n",
        "B.md": b"# upper\n",
        "img.png": b"\x89PNG\0\0",
        "latin1.txt": b"caf\xe9\n",
        "big.log": b"y" * 5000,
        ".git/HEAD": b"ref: refs/heads/main\n",
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.symlink("main.c", root / "link.c")


class TreeTest(unittest.TestCase):
    def test_list_tree(self):
        with tempfile.TemporaryDirectory() as d:
            make_tree(Path(d))
            listing = ingest.list_tree(d, max_file_bytes=4096)
            self.assertEqual([f[0] for f in listing.files],
                             [".gitignore", "B.md", "a-b.txt", "main.c", "src/.gitignore",
                              "src/gen_keep.c", "src/secret.txt"])
            skipped = dict(listing.skipped)
            self.assertEqual(skipped["build/"], "ignored")
            self.assertEqual(skipped[".git/"], "git metadata")
            self.assertEqual(skipped["img.png"], "binary (NUL byte)")
            self.assertEqual(skipped["latin1.txt"], "not UTF-8")
            self.assertEqual(skipped["link.c"], "symbolic link")
            self.assertTrue(skipped["big.log"].startswith("too large"))
        self.assertEqual(ingest.file_section_text("a", b"x"), b"=== File: a ===\nx\n")


@unittest.skipUnless(os.environ.get("TOME_CLI_BINARY"), "TOME_CLI_BINARY not set")
class SameAsTheCliTest(unittest.TestCase):
    """`tome --dry_run --json ingest` plans exactly what the Python client sends."""

    def cli_plan(self, *args):
        out = subprocess.run([os.environ["TOME_CLI_BINARY"], "--dry_run", "--json", "ingest",
                              *args], check=True, capture_output=True, text=True).stdout
        sections, skipped = [], []
        for line in out.splitlines():
            obj = json.loads(line)
            if "section" in obj:
                sections.append((obj["section"], int(obj["bytes"])))
            else:
                skipped.append((obj["skipped"], obj["reason"].split(" (")[0]))
        return sections, skipped

    def test_tree(self):
        with tempfile.TemporaryDirectory() as d:
            make_tree(Path(d))
            sections, skipped = self.cli_plan("--max_file_kb=4", d)
            listing = ingest.list_tree(d, max_file_bytes=4096)
            self.assertEqual(sections, listing.files)
            self.assertEqual(skipped, [(p, r.split(" (")[0]) for p, r in listing.skipped])

    def test_book(self):
        filler = "Some text of the chapter, long enough to be one.\n" * 6
        text = ("A Book\n\nContents\nCHAPTER I. Start\nCHAPTER II. End\n\n"
                f"CHAPTER I. Start\n{filler}BOOK TWO\nCHAPTER II. End\n{filler}"
                f"# Notes\n```\n# code\n```\n{filler}## Caf\u00e9\n{filler}")
        with tempfile.TemporaryDirectory() as d:
            book = Path(d) / "book.txt"
            book.write_text(text)
            sections, _ = self.cli_plan(str(book))
            data = book.read_bytes()
            expected = [(n, e - b) for n, b, e in ingest.book_spans(data)]
            self.assertEqual(sections, expected)
            self.assertEqual(len(expected), 5)


if __name__ == "__main__":
    unittest.main()
