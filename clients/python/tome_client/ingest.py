"""What `ingest_tree` and `ingest_file` send: the same rules as `tome ingest` (C++ CLI).

A source tree becomes one section per text file (.gitignore-style excludes honoured, .git/,
symbolic links, binary, non-UTF-8 and over-large files skipped, paths sorted bytewise), each
starting with a header line `=== File: PATH ===`. A book becomes one section per detected
chapter ("Chapter 12", "CHAPTER XII", "BOOK II", "# Heading", ... if at least two).
"""

import os
import re
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

PIECE_BYTES = 1 << 20  # AppendText payload per message, well under the 4 MiB limit
DEFAULT_MAX_FILE_BYTES = 1 << 20


# --- .gitignore matching ------------------------------------------------------------------

def glob_match(pattern: str, path: str) -> bool:
    """gitignore glob: `*`/`?` never match `/`, `**/` is zero or more directories."""
    return _match(pattern, 0, path, 0)


def _match_class(p: str, pi: int, c: str):
    """Matches `[...]` at p[pi] (just after `[`); returns (matched, next_pi) or None."""
    i = pi
    negate = False
    if i < len(p) and p[i] in "!^":
        negate = True
        i += 1
    matched = False
    first = True
    while i < len(p) and (p[i] != "]" or first):
        first = False
        lo = p[i]
        if lo == "\\" and i + 1 < len(p):
            i += 1
            lo = p[i]
        hi = lo
        if i + 2 < len(p) and p[i + 1] == "-" and p[i + 2] != "]":
            hi = p[i + 2]
            i += 2
        if lo <= c <= hi:
            matched = True
        i += 1
    if i >= len(p):
        return None
    return (matched != negate) and c != "/", i + 1


def _match(p: str, pi: int, s: str, si: int) -> bool:
    while pi < len(p):
        c = p[pi]
        if c == "*":
            double = pi + 1 < len(p) and p[pi + 1] == "*"
            component_start = pi == 0 or p[pi - 1] == "/"
            if double and component_start and (pi + 2 == len(p) or p[pi + 2] == "/"):
                if pi + 2 == len(p):
                    return True
                rest = pi + 3
                if _match(p, rest, s, si):
                    return True
                return any(s[i] == "/" and _match(p, rest, s, i + 1) for i in range(si, len(s)))
            rest = pi + 1
            while rest < len(p) and p[rest] == "*":
                rest += 1
            i = si
            while True:
                if _match(p, rest, s, i):
                    return True
                if i == len(s) or s[i] == "/":
                    return False
                i += 1
        if si == len(s):
            return False
        if c == "?":
            if s[si] == "/":
                return False
            pi += 1
            si += 1
            continue
        if c == "[":
            result = _match_class(p, pi + 1, s[si])
            if result is not None:
                matched, nxt = result
                if not matched:
                    return False
                pi = nxt
                si += 1
                continue
        literal = c
        if c == "\\" and pi + 1 < len(p):
            pi += 1
            literal = p[pi]
        if s[si] != literal:
            return False
        pi += 1
        si += 1
    return si == len(s)


class _Rule(NamedTuple):
    base: str
    pattern: str
    negate: bool
    dir_only: bool
    anchored: bool


class GitignoreMatcher:
    """Rules of .gitignore files; a nested file's rules apply below its directory."""

    def __init__(self):
        self.rules: List[_Rule] = []

    def add_rules(self, base: str, content: str) -> None:
        for line in content.split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            while line.endswith(" ") and not line.endswith("\\ "):
                line = line[:-1]
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            if dir_only:
                line = line[:-1]
            anchored = "/" in line
            if line.startswith("/"):
                line = line[1:]
            if line:
                self.rules.append(_Rule(base, line, negate, dir_only, anchored))

    def ignored(self, path: str, is_dir: bool) -> bool:
        name = path.rsplit("/", 1)[-1]
        ignored = False
        for r in self.rules:
            if r.dir_only and not is_dir:
                continue
            if r.negate == (not ignored):
                continue
            rel = path
            if r.base:
                if not path.startswith(r.base + "/") or len(path) <= len(r.base) + 1:
                    continue
                rel = path[len(r.base) + 1:]
            if glob_match(r.pattern, rel if r.anchored else name):
                ignored = not r.negate
        return ignored


# --- source trees -------------------------------------------------------------------------

def binary_reason(content: bytes) -> str:
    """Why `content` is not ingestible text ("" if it is)."""
    if b"\0" in content[:8192]:
        return "binary (NUL byte)"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    return ""


class TreeListing(NamedTuple):
    files: List[Tuple[str, int]]    # (relative path, bytes), sorted
    skipped: List[Tuple[str, str]]  # (relative path, reason), sorted; directories end in /


def list_tree(root: str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
              use_gitignore: bool = True, excludes: Sequence[str] = ()) -> TreeListing:
    """The text files below `root` that `ingest_tree` sends, and what it skips."""
    if not os.path.isdir(root):
        raise ValueError(f"{root} is not a directory")
    matcher = GitignoreMatcher()
    files, skipped = [], []

    def walk(directory: str, rel_dir: str) -> None:
        ignore_file = os.path.join(directory, ".gitignore")
        if use_gitignore and os.path.isfile(ignore_file) and not os.path.islink(ignore_file):
            try:
                with open(ignore_file, "rb") as f:
                    matcher.add_rules(rel_dir, f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        if not rel_dir and excludes:
            matcher.add_rules("", "\n".join(excludes))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            skipped.append((rel_dir + "/", f"unreadable directory: {e.strerror}"))
            return
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_symlink():
                    skipped.append((rel, "symbolic link"))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name == ".git":
                        skipped.append((rel + "/", "git metadata"))
                    elif matcher.ignored(rel, True):
                        skipped.append((rel + "/", "ignored"))
                    else:
                        walk(entry.path, rel)
                elif not entry.is_file(follow_symlinks=False):
                    skipped.append((rel, "not a regular file"))
                elif matcher.ignored(rel, False):
                    skipped.append((rel, "ignored"))
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    if size > max_file_bytes:
                        skipped.append((rel, f"too large ({size} bytes > {max_file_bytes})"))
                        continue
                    with open(entry.path, "rb") as f:
                        content = f.read()
                    reason = binary_reason(content)
                    if reason:
                        skipped.append((rel, reason))
                    else:
                        files.append((rel, len(content)))
            except OSError as e:
                skipped.append((rel, f"cannot read: {e.strerror}"))

    walk(root, "")
    # Full relative paths in byte order (UTF-8 byte order is code point order).
    files.sort()
    skipped.sort()
    return TreeListing(files, skipped)


def file_section_text(path: str, content: bytes) -> bytes:
    """A file's section: a header line naming it, its content, ending in a newline."""
    text = f"=== File: {path} ===\n".encode() + content
    if content and not content.endswith(b"\n"):
        text += b"\n"
    return text


# --- books --------------------------------------------------------------------------------

_MIN_CHAPTER_BYTES = 200
_MAX_HEADING_BYTES = 100
_KEYWORDS = (b"Chapter", b"CHAPTER", b"Book", b"BOOK", b"Part", b"PART")
_NUMBER_WORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "first", "second", "third", "fourth", "fifth", "last"}
_WS = b" \t\n\v\f\r"


def _is_number_token(word: bytes) -> bool:
    if not word or len(word) > 12:
        return False
    if word.isdigit():
        return len(word) <= 4
    if all(c in b"IVXLCDM" for c in word) or all(c in b"ivxlcdm" for c in word):
        return True
    return word.decode("ascii", "replace").lower() in _NUMBER_WORDS


def _is_word_heading(line: bytes) -> bool:
    for keyword in _KEYWORDS:
        if not line.startswith(keyword):
            continue
        rest = line[len(keyword):]
        if not rest or rest[:1] not in (b" ", b"\t"):
            return False
        rest = rest.lstrip(_WS)
        end = 0
        while end < len(rest) and (chr(rest[end]).isascii() and chr(rest[end]).isalnum()):
            end += 1
        if not _is_number_token(rest[:end]):
            return False
        rest = rest[end:]
        if not rest or rest[:1] in (b".", b":", b")", b"-"):
            return True
        if rest.startswith("\u2013".encode()) or rest.startswith("\u2014".encode()):
            return True
        if rest[:1] not in (b" ", b"\t"):
            return False
        rest = rest.lstrip(_WS)
        return bool(rest) and not (97 <= rest[0] <= 122)
    return False


def chapter_heading(line: bytes) -> Optional[Tuple[str, bool]]:
    """(name, is_markdown) if `line` is a chapter heading, else None."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > _MAX_HEADING_BYTES + 8:
        return None
    hashes = len(line) - len(line.lstrip(b"#"))
    if hashes in (1, 2):
        if hashes == len(line) or line[hashes:hashes + 1] not in (b" ", b"\t"):
            return None
        title = line[hashes:].strip(_WS).rstrip(b"#").rstrip(_WS)
        return (title.decode("utf-8", "replace"), True) if title else None
    trimmed = line.strip(_WS)
    if len(trimmed) > _MAX_HEADING_BYTES or not _is_word_heading(trimmed):
        return None
    return trimmed.decode("utf-8", "replace"), False


def detect_chapters(text: bytes) -> List[Tuple[str, int]]:
    """(name, byte offset of the heading line) of each chapter; [] unless at least two."""
    headings = []  # (name, offset, markdown)
    in_fence = False
    start = 0
    while start < len(text):
        end = text.find(b"\n", start)
        if end < 0:
            end = len(text)
        line = text[start:end]
        stripped = line.lstrip(_WS)
        if stripped.startswith(b"```") or stripped.startswith(b"~~~"):
            in_fence = not in_fence
        elif not in_fence:
            h = chapter_heading(line)
            if h:
                headings.append((h[0], start, h[1]))
        start = end + 1

    def is_short(k):
        return (not headings[k][2] and k + 1 < len(headings)
                and headings[k + 1][1] - headings[k][1] < _MIN_CHAPTER_BYTES)

    def name_repeats(k):
        return any(h[0].lower() == headings[k][0].lower() for h in headings[k + 1:])

    chapters = []
    i = 0
    while i < len(headings):
        run = i
        while run < len(headings) and is_short(run):
            run += 1
        if run == i:
            chapters.append((headings[i][0], headings[i][1]))
            i += 1
            continue
        if run - i == 1:  # a part title directly above a chapter
            chapters.append((f"{headings[i][0]} / {headings[run][0]}", headings[i][1]))
        elif not name_repeats(run):  # else the last line of a table of contents
            chapters.append((headings[run][0], headings[run][1]))
        i = run + 1
    return chapters if len(chapters) >= 2 else []


def chapter_section_text(name: str, text: bytes) -> bytes:
    """The text sent for a chapter, as `tome ingest FILE` sends it: a header line
    `=== Chapter: NAME ===` (the form Tome's model reads section names from), then the
    chapter. Unnamed spans go as they are."""
    if not name:
        return text
    return f"=== Chapter: {name} ===\n".encode() + text


def book_spans(text: bytes, detect: bool = True) -> List[Tuple[str, int, int]]:
    """(section name or "", begin, end) covering `text`: one per chapter, if detected."""
    chapters = detect_chapters(text) if detect else []
    if not chapters:
        return [("", 0, len(text))]
    spans = []
    if chapters[0][1] > 0:
        spans.append(("", 0, chapters[0][1]))
    for k, (name, offset) in enumerate(chapters):
        end = chapters[k + 1][1] if k + 1 < len(chapters) else len(text)
        spans.append((name, offset, end))
    return spans


def pieces(sections: Iterable[Tuple[str, bytes]],
           piece_bytes: int = PIECE_BYTES) -> Iterator[Tuple[str, bytes]]:
    """Cuts (section, text) pairs into (section, piece) pairs of at most piece_bytes;
    only a section's first piece names it."""
    for section, text in sections:
        offset = 0
        while True:
            yield (section if offset == 0 else ""), text[offset:offset + piece_bytes]
            offset += piece_bytes
            if offset >= len(text):
                break
