#!/usr/bin/env python3
"""Collects real text from Debian/npm packages, splits it into training and held-out
documents, trains the SentencePiece tokenizer and pre-tokenizes everything.

Run from the repository root (root is needed only to apt-get install bible-kjv):

    /usr/bin/python3 tools/train/prepare_data.py            # everything, into .devdata/

Steps (all idempotent; --force redoes them):
  fetch    apt-get download bible-kjv-text r-cran-janeaustenr python3.11-doc linux-source-6.1
           into .devdata/debs, unpack into .devdata/pkgs; `npm pack better-sqlite3@12` into
           .devdata/npm; apt-get install bible-kjv (the `bible` program that decodes the
           compressed KJV data file) when it is missing.
  extract  text units (a Bible chapter, an Austen chapter, a Python doc page, a kernel or
           SQLite source file) -> .devdata/text/{train,heldout}.jsonl
  spm      spm_train on the training units -> .devdata/train/tokenizer.model
  encode   tokens -> .devdata/train/{train,heldout}.npz (+ manifest.json,
           tokenizer_check.json)

Everything the GPU machine needs is in .devdata/train (tokenizer + two .npz files).
See docs/MODEL.md for the split and the formats.
"""

import argparse
import glob
import html
import html.parser
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus as corpus_mod  # noqa: E402
import rdata  # noqa: E402

DEBS = ["bible-kjv-text", "r-cran-janeaustenr", "python3.11-doc", "linux-source-6.1"]
NPM_PACKAGE = "better-sqlite3@12"

# ------------------------------------------------------------------------------ split
HELDOUT_BIBLE_BOOKS = {"Joshua", "Ruth", "Ecclesiastes", "Lamentations", "Daniel", "Mark",
                       "Acts", "James", "1 Peter"}
HELDOUT_AUSTEN = {"persuasion"}
HELDOUT_PYDOC_DIRS = ("tutorial/", "howto/", "faq/")
PYDOC_TRAIN_SKIP = re.compile(r"^(genindex|search|py-modindex|contents|whatsnew/changelog|"
                              r"download|bugs|copyright|license|about)")
KERNEL_HELDOUT_DIRS = ("fs/fat/", "fs/ext2/", "fs/jbd2/", "net/unix/", "io_uring/", "virt/")
KERNEL_TRAIN_DIRS = ("kernel/", "mm/", "fs/ext4/", "ipc/", "init/", "block/", "lib/",
                     "net/core/", "net/ipv4/", "security/", "crypto/")
KERNEL_TRAIN_BUDGET = 20_000_000  # bytes of training C text from the kernel
SQLITE_HELDOUT = re.compile(r"^(fts3.*|rtree\.[ch]|geopoly\.c|window\.c|json\.c|sqliteicu\.h)$")

AUSTEN_TITLES = {
    "emma": "Emma", "mansfieldpark": "Mansfield Park", "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion", "prideprejudice": "Pride and Prejudice",
    "sensesensibility": "Sense and Sensibility",
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def run(cmd, **kw):
    log("$", " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


# ------------------------------------------------------------------------------ cleaning
_CTRL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u2581\ufeff]")


def clean_line(s):
    """One line of text as stored: no control characters except tab, no U+2581 (the
    SentencePiece space marker, which would not round-trip), no trailing whitespace."""
    return _CTRL.sub("", s.replace("\r", "")).rstrip()


def squeeze_blank(lines, keep=1):
    """Drop leading/trailing blank lines and runs of more than `keep` blank lines."""
    out, blank = [], 0
    for ln in lines:
        if ln.strip():
            blank = 0
            out.append(ln)
        else:
            blank += 1
            if blank <= keep and out:
                out.append("")
    while out and not out[-1].strip():
        out.pop()
    return out


def unit(source, kind, name, lines, group):
    return {"source": source, "kind": kind, "name": name, "group": group,
            "lines": [clean_line(x) for x in lines]}


# ------------------------------------------------------------------------------ fetch
def fetch(work):
    debs = os.path.join(work, "debs")
    pkgs = os.path.join(work, "pkgs")
    os.makedirs(debs, exist_ok=True)
    for name in DEBS:
        if not glob.glob(os.path.join(debs, name + "_*.deb")):
            run(["apt-get", "download", name], cwd=debs)
    marker = os.path.join(pkgs, ".unpacked")
    if not os.path.exists(marker):
        os.makedirs(pkgs, exist_ok=True)
        for f in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            run(["dpkg-deb", "-x", f, pkgs])
        open(marker, "w").close()
    npm = os.path.join(work, "npm")
    os.makedirs(npm, exist_ok=True)
    if not glob.glob(os.path.join(npm, "better-sqlite3-*.tgz")):
        run(["npm", "pack", NPM_PACKAGE], cwd=npm)
    if shutil.which("bible") is None:
        run(["apt-get", "install", "-y", "--no-install-recommends", "bible-kjv"])


# ------------------------------------------------------------------------------ sources
def extract_bible(work):
    """KJV through the `bible` program (bible-kjv), which decodes bible-kjv-text's
    compressed /usr/lib/bible.data. One unit per chapter, one line per verse."""
    data = os.path.join(work, "pkgs", "usr", "lib")
    cmd = ["bible", "-l100000", "-p", data, "Gen1:1-Rev22:21"]
    if not os.path.exists(os.path.join(data, "bible.data")):
        cmd = ["bible", "-l100000", "Gen1:1-Rev22:21"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout.decode("utf-8", "replace")
    units, name, verses = [], None, []
    for raw in out.split("\n"):
        if not raw.strip():
            continue
        m = re.match(r"^  (\d+) (.*)$", raw)
        if m and name:
            verses.append("%s %s" % (m.group(1), m.group(2).strip()))
            continue
        m = re.match(r"^(\S.*) (\d+)$", raw.strip())
        if not m:
            raise ValueError("unexpected bible line %r" % raw)
        if name:
            units.append((name, verses))
        name, verses = raw.strip(), []
    units.append((name, verses))
    res = []
    for name, verses in units:
        book = name.rsplit(" ", 1)[0]
        split = "heldout" if book in HELDOUT_BIBLE_BOOKS else "train"
        res.append((split, unit("bible", "Chapter", name, verses, "Bible: " + book)))
    if len(res) != 1189:
        raise ValueError("expected 1189 KJV chapters, got %d" % len(res))
    return res


def extract_austen(work):
    """The six novels from r-cran-janeaustenr's lazy-load data (read without R).
    One unit per chapter (numbered through the novel), one line per paragraph."""
    base = glob.glob(os.path.join(work, "pkgs", "usr", "lib", "R", "site-library",
                                  "janeaustenr", "data", "Rdata.rdx"))
    if not base:
        raise FileNotFoundError("janeaustenr data not found under %s/pkgs" % work)
    objs = rdata.read_lazyload_db(base[0][:-4])
    res = []
    for key in sorted(AUSTEN_TITLES):
        title = AUSTEN_TITLES[key]
        lines = [x or "" for x in objs[key]]
        chapters, cur, para = [], None, []

        def flush_para():
            if para and cur is not None:
                cur.append(" ".join(p.strip() for p in para))
            para.clear()

        for ln in lines:
            s = ln.strip()
            if re.match(r"^(CHAPTER|Chapter)\s+[0-9IVXLC]+\.?$", s):
                flush_para()
                cur = []
                chapters.append(cur)
                continue
            if re.match(r"^(VOLUME|Volume)\s+[IVX0-9]+$", s) or s.upper() == "THE END" or \
                    re.match(r"^Finis$", s):
                flush_para()
                continue
            if not s:
                flush_para()
                continue
            para.append(s)
        flush_para()
        split = "heldout" if key in HELDOUT_AUSTEN else "train"
        for i, ch in enumerate(chapters):
            res.append((split, unit("austen", "Chapter", "%s %d" % (title, i + 1), ch,
                                    "Austen: " + title)))
    return res


class _DocText(html.parser.HTMLParser):
    """Plain text of a Sphinx page's main body: paragraphs on one line each, <pre> kept."""
    BLOCK = {"p", "div", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
             "table", "section", "blockquote", "ul", "ol", "dl", "br", "hr", "caption",
             "figure", "figcaption"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth_main = 0      # >0 while inside div role=main
        self.div_depth = 0
        self.main_at = None
        self.skip = 0
        self.pre = 0
        self.lines = []
        self.cur = []
        self.headerlink = 0

    def _flush(self):
        text = "".join(self.cur)
        self.cur = []
        if self.pre:
            return
        text = re.sub(r"\s+", " ", text).strip()
        if text:
            self.lines.append(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            self.div_depth += 1
            if self.main_at is None and a.get("role") == "main":
                self.main_at = self.div_depth
        if self.main_at is None:
            return
        if tag in self.SKIP:
            self.skip += 1
        if tag == "a" and "headerlink" in (a.get("class") or ""):
            self.headerlink += 1
        if tag == "pre":
            self._flush()
            self.pre += 1
        elif tag in self.BLOCK and not self.pre:
            self._flush()
            if tag == "li":
                self.cur.append("* ")

    def handle_endtag(self, tag):
        if self.main_at is not None:
            if tag in self.SKIP:
                self.skip = max(0, self.skip - 1)
            if tag == "a" and self.headerlink:
                self.headerlink -= 1
            if tag == "pre" and self.pre:
                text = "".join(self.cur)
                self.cur = []
                self.pre -= 1
                for ln in text.strip("\n").split("\n"):
                    self.lines.append(ln.rstrip())
                self.lines.append("")
            elif tag in self.BLOCK and not self.pre:
                self._flush()
        if tag == "div":
            if self.main_at is not None and self.div_depth == self.main_at:
                self._flush()
                self.main_at = -1  # done; ignore the rest of the page
            self.div_depth -= 1

    def handle_data(self, data):
        if self.main_at is None or self.main_at == -1 or self.skip or self.headerlink:
            return
        self.cur.append(data)


def html_to_lines(text):
    p = _DocText()
    p.feed(text)
    p.close()
    out = []
    for ln in p.lines:
        ln = ln.replace("\u00b6", "")
        out.append(ln)
    return squeeze_blank(out)


def extract_pydoc(work):
    root = glob.glob(os.path.join(work, "pkgs", "usr", "share", "doc", "python3.*", "html"))
    if not root:
        raise FileNotFoundError("python3 html docs not found under %s/pkgs" % work)
    root = root[0]
    res = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True)):
        rel = os.path.relpath(path, root)
        if rel.startswith("_") or PYDOC_TRAIN_SKIP.match(rel):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = html_to_lines(f.read())
        if sum(len(x) for x in lines) < 200:
            continue
        split = "heldout" if rel.startswith(HELDOUT_PYDOC_DIRS) else "train"
        group = "Python docs: " + (rel.split("/")[0] if "/" in rel else "(top)")
        res.append((split, unit("pydoc", "File", "python/" + rel, lines, group)))
    return res


def _code_lines(text):
    return squeeze_blank([clean_line(x) for x in text.split("\n")], keep=1)


def extract_kernel(work):
    tarball = glob.glob(os.path.join(work, "pkgs", "usr", "src", "linux-source-*.tar.xz"))
    if not tarball:
        raise FileNotFoundError("linux-source tarball not found under %s/pkgs" % work)
    wanted = KERNEL_TRAIN_DIRS + KERNEL_HELDOUT_DIRS
    files = {}
    with tarfile.open(tarball[0], "r:xz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            parts = m.name.split("/", 1)
            if len(parts) != 2:
                continue
            rel = parts[1]
            if not rel.endswith((".c", ".h")):
                continue
            if not rel.startswith(wanted):
                continue
            data = tf.extractfile(m).read().decode("utf-8", "replace")
            files[rel] = data
    res = []
    held = sorted(r for r in files if r.startswith(KERNEL_HELDOUT_DIRS))
    train = sorted(r for r in files if not r.startswith(KERNEL_HELDOUT_DIRS))
    rng = random.Random(1234)
    rng.shuffle(train)
    total, keep = 0, []
    for rel in train:
        if total >= KERNEL_TRAIN_BUDGET:
            break
        keep.append(rel)
        total += len(files[rel])
    for split, rels in (("heldout", held), ("train", sorted(keep))):
        for rel in rels:
            group = "Linux: " + "/".join(rel.split("/")[:2 if rel.startswith(("fs/", "net/"))
                                                         else 1])
            res.append((split, unit("linux", "File", "linux/" + rel, _code_lines(files[rel]),
                                    group)))
    return res


def extract_sqlite(work):
    tgz = glob.glob(os.path.join(work, "npm", "better-sqlite3-*.tgz"))
    if not tgz:
        raise FileNotFoundError("better-sqlite3 npm tarball not found under %s/npm" % work)
    with tarfile.open(tgz[0], "r:gz") as tf:
        text = tf.extractfile("package/deps/sqlite3/sqlite3.c").read().decode("utf-8", "replace")
    pat = re.compile(r"^/\*{14} (Begin file|End of|Continuing where we left off in) (\S+)")
    stack, order, parts = ["sqlite3.c"], ["sqlite3.c"], {"sqlite3.c": []}
    for ln in text.split("\n"):
        m = pat.match(ln)
        if m:
            kind, name = m.groups()
            if kind == "Begin file":
                stack.append(name)
            elif kind == "End of":
                if name in stack:
                    while stack[-1] != name:
                        stack.pop()
                    stack.pop()
                if not stack:
                    stack = ["sqlite3.c"]
            else:
                if name in stack:
                    while stack[-1] != name:
                        stack.pop()
                else:
                    stack.append(name)
            continue
        cur = stack[-1]
        if cur not in parts:
            parts[cur] = []
            order.append(cur)
        parts[cur].append(ln)
    res = []
    for name in order:
        lines = _code_lines("\n".join(parts[name]))
        if sum(len(x) for x in lines) < 200:
            continue
        split = "heldout" if SQLITE_HELDOUT.match(name) else "train"
        res.append((split, unit("sqlite", "File", "sqlite/" + name, lines, "SQLite")))
    return res


EXTRACTORS = [("bible", extract_bible), ("austen", extract_austen), ("pydoc", extract_pydoc),
              ("linux", extract_kernel), ("sqlite", extract_sqlite)]


def extract(work):
    out_dir = os.path.join(work, "text")
    os.makedirs(out_dir, exist_ok=True)
    files = {s: open(os.path.join(out_dir, s + ".jsonl.tmp"), "w", encoding="utf-8")
             for s in ("train", "heldout")}
    stats = {}
    for name, fn in EXTRACTORS:
        t0 = time.time()
        units = fn(work)
        for split, u in units:
            u["lines"] = squeeze_blank(u["lines"], keep=1)
            if not u["lines"]:
                continue
            files[split].write(json.dumps(u, ensure_ascii=False) + "\n")
            st = stats.setdefault("%s/%s" % (name, split), [0, 0])
            st[0] += 1
            st[1] += sum(len(x.encode("utf-8")) + 1 for x in u["lines"])
        log("extracted %s in %.0fs" % (name, time.time() - t0))
    for s, f in files.items():
        f.close()
        os.replace(os.path.join(out_dir, s + ".jsonl.tmp"), os.path.join(out_dir, s + ".jsonl"))
    for k in sorted(stats):
        log("  %-16s %6d units %10d bytes" % (k, stats[k][0], stats[k][1]))
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)


def read_units(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


# ------------------------------------------------------------------------------ tokenizer
def train_spm(work, out, vocab, threads):
    text_dir = os.path.join(work, "text")
    inp = os.path.join(work, "spm_input.txt")
    n = 0
    with open(inp, "w", encoding="utf-8") as f:
        for u in read_units(os.path.join(text_dir, "train.jsonl")):
            for ln in u["lines"]:
                if ln.strip():
                    f.write(ln + "\n")
                    n += 1
    log("spm input: %d lines" % n)
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "tokenizer")
    run(["spm_train",
         "--input=" + inp,
         "--model_prefix=" + prefix,
         "--vocab_size=%d" % vocab,
         "--model_type=bpe",
         "--character_coverage=0.9995",
         "--byte_fallback=true",
         "--split_digits=true",
         "--allow_whitespace_only_pieces=true",
         # spm_train learns no piece with a tab; runs of tabs (C indentation) get their own
         "--user_defined_symbols=" + ",".join("\t" * n for n in (2, 3, 4, 5, 6)),
         "--remove_extra_whitespaces=false",
         "--add_dummy_prefix=false",
         "--normalization_rule_name=identity",
         "--max_sentence_length=16384",
         "--input_sentence_size=2000000",
         "--shuffle_input_sentence=true",
         "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1",
         "--num_threads=%d" % threads,
         "--minloglevel=1"])
    os.replace(prefix + ".model", os.path.join(out, "tokenizer.model"))
    os.replace(prefix + ".vocab", os.path.join(out, "tokenizer.vocab"))
    os.remove(inp)


TOKENIZER_CHECK_STRINGS = [
    "In the beginning God created the heaven and the earth.\n",
    "The access code for Velmor Quintash is 40213.\n",
    "\nQuestion: What is the access code for Velmor Quintash?\nAnswer:",
    " 40213",
    "=== File: linux/kernel/sched/core.c ===\n",
    "\tif (unlikely(!p)) {\n\t\treturn -EINVAL;   /* comment */\n",
    "    def __init__(self, x):  # naïve café — “quotes” 日本語 😀\n",
]


def encode(work, out):
    import tokenizer as tok_mod
    tok = tok_mod.Tokenizer(os.path.join(out, "tokenizer.model"))
    text_dir = os.path.join(work, "text")
    manifest = {"vocab_size": tok.vocab_size, "nl_id": tok.nl_id, "splits": {}}
    for split in ("train", "heldout"):
        units = list(read_units(os.path.join(text_dir, split + ".jsonl")))
        all_lines = [ln for u in units for ln in u["lines"]]
        log("encoding %s: %d units, %d lines" % (split, len(units), len(all_lines)))
        ids = tok.sp.encode(all_lines)
        bad = 0
        for k in range(0, len(all_lines), 97):  # round-trip spot check (every 97th line)
            if tok.decode(ids[k]) != all_lines[k]:
                bad += 1
        if bad:
            raise ValueError("%d lines of %s do not round-trip through the tokenizer" % (bad, split))
        lens = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
        line_off = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lens, out=line_off[1:])
        tokens = np.empty(int(line_off[-1]), dtype=np.uint16)
        for k, x in enumerate(ids):
            a = line_off[k]
            tokens[a:a + len(x)] = x
            tokens[a + len(x)] = tok.nl_id
        del ids
        unit_line = np.zeros(len(units) + 1, dtype=np.int64)
        np.cumsum([len(u["lines"]) for u in units], out=unit_line[1:])
        meta = [{"source": u["source"], "kind": u["kind"], "name": u["name"],
                 "group": u["group"]} for u in units]
        path = os.path.join(out, split + ".npz")
        corpus_mod.save_corpus(path, tokens, line_off, unit_line, meta)
        by_src = {}
        for u, a, b in zip(meta, unit_line[:-1], unit_line[1:]):
            s = by_src.setdefault(u["source"], [0, 0])
            s[0] += 1
            s[1] += int(line_off[b] - line_off[a])
        manifest["splits"][split] = {
            "tokens": int(tokens.size), "lines": len(all_lines), "units": len(units),
            "bytes_text": sum(len(x.encode("utf-8")) + 1 for x in all_lines),
            "file_bytes": os.path.getsize(path),
            "by_source": {k: {"units": v[0], "tokens": v[1]} for k, v in sorted(by_src.items())},
        }
        log("  %s: %d tokens (%.2f bytes/token), %s %.1f MB" % (
            split, tokens.size, manifest["splits"][split]["bytes_text"] / max(1, tokens.size),
            path, os.path.getsize(path) / 1e6))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    check = [{"text": s, "ids": tok.encode(s)} for s in TOKENIZER_CHECK_STRINGS]
    with open(os.path.join(out, "tokenizer_check.json"), "w") as f:
        json.dump(check, f, ensure_ascii=False, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=".devdata", help="download/intermediate directory")
    ap.add_argument("--out", default=".devdata/train", help="prepared data directory")
    ap.add_argument("--steps", default="fetch,extract,spm,encode")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="redo steps whose output exists")
    args = ap.parse_args()
    steps = args.steps.split(",")
    work = os.path.abspath(args.work)
    out = os.path.abspath(args.out)
    if "fetch" in steps:
        fetch(work)
    if "extract" in steps and (args.force or not os.path.exists(
            os.path.join(work, "text", "heldout.jsonl"))):
        extract(work)
    if "spm" in steps and (args.force or not os.path.exists(os.path.join(out, "tokenizer.model"))):
        train_spm(work, out, args.vocab, args.threads)
    if "encode" in steps and (args.force or not os.path.exists(os.path.join(out, "heldout.npz"))):
        encode(work, out)
    log("done")


if __name__ == "__main__":
    main()
