"""Documents and questions of Tome's small model: the one definition shared by training
(tools/train/train.py) and evaluation (tools/eval/eval.py). docs/MODEL.md documents the
formats below; change them only together with it.

Prompt (what the server builds, engine/src/prompt.cc, plain format):
    [BOS] + Encode(document text)
    + Encode("\\nQuestion: " + question + "\\nAnswer:")
    + Encode(" " + answer) + [EOS]                      (the model generates this part)
Training may follow one document with several question/answer pairs, one after the other.

Documents are lines of real text (pre-tokenized corpora, see corpus.py). A document is
either "sectioned" (every unit starts with a header line "=== File: <path> ===" or
"=== Chapter: <name> ===") or plain (units separated by an empty line). Needle lines are
inserted between lines.

Tasks (question -> answer):
    kv        needle line   "The access code for <Name> is <ddddd>."
              question      "What is the access code for <Name>?"          -> "<ddddd>"
    continue  question      'Which six words follow "<quote>"?'
              -> the six whitespace-separated words that follow <quote> on its line, exactly
                 as in the text (internal spacing kept)
    section   question      'Which section contains the text "<quote>"?'
              -> the name in the header of the section whose body contains <quote>
<Name> is two invented capitalised words; <ddddd> five digits (10000-99999). Quotes are
exact substrings of one line and occur exactly once in the document. Training and
evaluation names/values are disjoint: a word or a value belongs to the evaluation set iff
crc32 of it is divisible by 8 (EVAL_BUCKETS).
"""

import re
import zlib

import numpy as np

try:
    from tokenizer import BOS_ID, EOS_ID
except ImportError:  # imported as tools.train.tasks
    from .tokenizer import BOS_ID, EOS_ID

# ---------------------------------------------------------------------------- templates
NEEDLE = "The access code for {name} is {value}."
KV_QUESTION = "What is the access code for {name}?"
CONTINUE_QUESTION = 'Which six words follow "{quote}"?'
SECTION_QUESTION = 'Which section contains the text "{quote}"?'
HEADER = "=== {kind}: {name} ==="
QUESTION_PREFIX = "\nQuestion: "
ANSWER_CUE = "\nAnswer:"
CONTINUE_WORDS = 6
TASKS = ("kv", "continue", "section")
EVAL_BUCKETS = 8  # crc32(x) % 8 == 0 -> evaluation set


def question_text(q):
    """The part of the prompt after the document (Encode() of this is what the server
    appends: PromptFormat::Question)."""
    return QUESTION_PREFIX + q + ANSWER_CUE


def answer_text(a):
    """What the model generates before EOS."""
    return " " + a


def normalize_answer(s):
    """Scoring: exact match after stripping leading/trailing whitespace."""
    return s.strip()


# ---------------------------------------------------------------------------- names/values
_ONSETS = ["b", "br", "c", "ch", "cr", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "kr",
           "l", "m", "n", "p", "pr", "qu", "r", "s", "sh", "st", "t", "th", "tr", "v", "w",
           "z", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
_CODAS = ["", "", "", "l", "n", "r", "s", "th", "sh", "x", "m", "nd", "rk", "st"]


def _bucket(s):
    return zlib.crc32(s.encode("utf-8")) % EVAL_BUCKETS == 0


def is_eval_word(w):
    return _bucket(w.lower())


def is_eval_value(v):
    return _bucket(v)


def _word(rng):
    n = 2 if rng.random() < 0.7 else 3
    w = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                for _ in range(n))
    w += _CODAS[rng.integers(len(_CODAS))]
    return w.capitalize()


def make_name(rng, split):
    """Two invented capitalised words, both from the split's word set."""
    want_eval = split != "train"
    words = []
    while len(words) < 2:
        w = _word(rng)
        if 4 <= len(w) <= 11 and is_eval_word(w) == want_eval and w not in words:
            words.append(w)
    return " ".join(words)


def make_value(rng, split):
    want_eval = split != "train"
    while True:
        v = str(int(rng.integers(10000, 100000)))
        if is_eval_value(v) == want_eval:
            return v


def needle_line(name, value):
    return NEEDLE.format(name=name, value=value)


def invented_section_name(rng, split, kind, name):
    """An invented name of the same shape as a real one (a path keeps its first directory
    and extension, a chapter its number): a section name can then only come from reading
    the header, not from recognising the text's source."""
    last = name.rpartition(" ")[2]
    if kind == "Chapter" and last.isdigit():
        return "%s %s" % (make_name(rng, split).split()[0], last)
    base = name.rsplit("/", 1)[-1]
    ext = base[base.rfind("."):] if "." in base else ""
    w1, w2 = make_name(rng, split).lower().split()
    return "%s/%s/%s%s" % (name.split("/")[0], w1, w2, ext)


# ---------------------------------------------------------------------------- documents
ROW_TEXT, ROW_HEADER, ROW_NEEDLE, ROW_BLANK, ROW_SCRAMBLED = 0, 1, 2, 3, 4


class Document:
    """A document as a list of rows (lines). Each row has tokens (ending with "\\n"), a
    kind, a corpus line id (text rows) or its text (synthetic rows), and a section index
    (-1 outside sections)."""

    def __init__(self, corpus, tokenizer):
        self.corpus = corpus
        self.tok = tokenizer
        self.rows = []          # [kind, line_id or text, section, tokens]
        self.sections = []      # [(kind, name)]
        self.needles = []       # [(name, value)] in insertion order
        self.sectioned = False
        self._text = None
        self._row_text = {}
        self._starts = None

    # -- building
    def add_header(self, kind, name):
        self.sections.append((kind, name))
        text = HEADER.format(kind=kind, name=name)
        self._add_row([ROW_HEADER, text, len(self.sections) - 1,
                       np.asarray(self.tok.encode(text + "\n"), dtype=np.int64)])

    def add_blank(self):
        self._add_row([ROW_BLANK, "", -1, np.asarray([self.tok.nl_id], dtype=np.int64)])

    def add_lines(self, a, b):
        sec = len(self.sections) - 1 if self.sectioned else -1
        c = self.corpus
        for line in range(a, b):
            self._add_row([ROW_TEXT, line, sec, c.line_tokens(line)])

    def insert_needle(self, index, name, value):
        text = needle_line(name, value)
        sec = self.rows[index - 1][2] if index > 0 else -1
        self.rows.insert(index, [ROW_NEEDLE, text, sec,
                                 np.asarray(self.tok.encode(text + "\n"), dtype=np.int64)])
        self.needles.append((name, value))
        self._dirty()

    def scramble_row(self, i, rng):
        """Row i's words in a random order (indentation kept): text no model has seen, so a
        continue question about it can only be answered by copying from the document."""
        line = self.row_text(i)
        indent = line[:len(line) - len(line.lstrip())]
        words = line.split()
        rng.shuffle(words)
        text = indent + " ".join(words)
        self.rows[i] = [ROW_SCRAMBLED, text, self.rows[i][2],
                        np.asarray(self.tok.encode(text + "\n"), dtype=np.int64)]
        self._dirty()

    def _add_row(self, row):
        self.rows.append(row)
        self._dirty()

    def _dirty(self):
        self._text = None
        self._starts = None
        self._row_text = {}

    # -- views
    @property
    def starts(self):
        """Token offset of each row within the document text (BOS not counted) and, last,
        the total."""
        if self._starts is None:
            lens = [len(r[3]) for r in self.rows]
            self._starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return self._starts

    @property
    def num_tokens(self):
        """Tokens of the document text (without BOS)."""
        return int(self.starts[-1])

    def tokens(self):
        if not self.rows:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.asarray(r[3], dtype=np.int64) for r in self.rows])

    def row_text(self, i):
        """Text of row i without its newline."""
        r = self.rows[i]
        if r[0] != ROW_TEXT:
            return r[1]
        t = self._row_text.get(i)
        if t is None:
            t = self.corpus.line_text(r[1], self.tok)
            self._row_text[i] = t
        return t

    def text(self):
        """The document text exactly as it is sent to the server."""
        if self._text is None:
            self._text = self.tok.decode(self.tokens())
        return self._text

    def depth_of_row(self, i):
        return float(self.starts[i]) / max(1, self.num_tokens)

    def row_at_depth(self, depth):
        """Index of the row boundary closest to the given token fraction."""
        target = depth * self.num_tokens
        k = int(np.searchsorted(self.starts, target))
        k = min(max(k, 0), len(self.rows))
        if k > 0 and abs(self.starts[k - 1] - target) < abs(self.starts[k] - target):
            k -= 1
        return k


def _units_from(corpus, rng, source, start_unit=None):
    units = corpus.by_source[source]
    k = int(rng.integers(len(units))) if start_unit is None else start_unit
    for j in range(len(units)):
        yield units[(k + j) % len(units)]


def build_haystack(corpus, tokenizer, rng, n_tokens, source=None, sectioned=True,
                   sources=None, mix_sources=False, random_start=True, max_unit_lines=None,
                   rename=None):
    """A document of about n_tokens tokens (never more) of consecutive units of one source
    (sources: {name: weight} to draw it from). mix_sources: when the source runs out,
    continue with the other sources (evaluation documents longer than one source's
    held-out text). The first unit starts at a random line when it is longer than the
    budget (random_start). max_unit_lines: take only a random window of at most that many
    lines of each unit (short documents with several sections). rename: (kind, name) ->
    the name its header shows."""
    doc = Document(corpus, tokenizer)
    doc.sectioned = sectioned
    if source is None:
        names = sorted(sources or {s: 1.0 for s in corpus.by_source})
        w = np.asarray([(sources or {}).get(s, 1.0) for s in names], dtype=np.float64)
        source = names[int(rng.choice(len(names), p=w / w.sum()))]
    order = [source]
    if mix_sources:
        others = [s for s in sorted(corpus.by_source) if s != source]
        rng.shuffle(others)
        order += others
    first = True
    for src in order:
        for u in _units_from(corpus, rng, src):
            remaining = n_tokens - doc.num_tokens
            a, b = corpus.unit_lines(u)
            meta = corpus.meta[u]
            name = rename(meta["kind"], meta["name"]) if rename else meta["name"]
            header_cost = 0
            if sectioned:
                header_cost = len(tokenizer.encode(HEADER.format(kind=meta["kind"],
                                                                 name=name) + "\n"))
            elif doc.rows:
                header_cost = 1  # blank separator line
            if remaining - header_cost < 8:
                return doc
            budget = remaining - header_cost
            if max_unit_lines and b - a > max_unit_lines:
                a = a + int(rng.integers(0, b - a - max_unit_lines + 1))
                b = a + max_unit_lines
            lens = corpus.line_len[a:b]
            if first and random_start and int(lens.sum()) > budget and b - a > 1:
                # start somewhere inside a long unit so its whole text gets used
                cum_from_end = np.cumsum(lens[::-1])[::-1]
                latest = int(np.searchsorted(-cum_from_end, -budget, side="left"))
                a = a + int(rng.integers(0, max(1, latest + 1)))
                lens = corpus.line_len[a:b]
            cum = np.cumsum(lens)
            n = int(np.searchsorted(cum, budget, side="right"))
            if n == 0:
                if first or max_unit_lines:
                    continue  # first line alone too long; try another unit
                return doc
            if sectioned:
                doc.add_header(meta["kind"], name)
            elif doc.rows:
                doc.add_blank()
            doc.add_lines(a, a + n)
            first = False
            if n < b - a:
                return doc
        if not mix_sources:
            break
    return doc


# ---------------------------------------------------------------------------- questions
class QA:
    __slots__ = ("task", "question", "answer", "depth", "row")

    def __init__(self, task, question, answer, depth, row):
        self.task, self.question, self.answer, self.depth, self.row = (task, question, answer,
                                                                       depth, row)

    def __repr__(self):
        return "QA(%s, %r -> %r @%.2f)" % (self.task, self.question, self.answer, self.depth)


_WORD = re.compile(r"\S+")


def kv_qa(doc, name, value):
    row = next(i for i, r in enumerate(doc.rows) if r[0] == ROW_NEEDLE and
               r[1] == needle_line(name, value))
    return QA("kv", KV_QUESTION.format(name=name), value, doc.depth_of_row(row), row)


def _candidate_rows(doc, rng, depth, want_section, exclude=()):
    """Text rows, nearest to `depth` first (or in random order)."""
    idx = [i for i, r in enumerate(doc.rows) if r[0] in (ROW_TEXT, ROW_SCRAMBLED) and
           (not want_section or r[2] >= 0) and i not in exclude]
    if not idx:
        return []
    if depth is None:
        rng.shuffle(idx)
        return idx[:64]
    target = depth * doc.num_tokens
    idx.sort(key=lambda i: abs(doc.starts[i] - target))
    return idx[:64]


def continue_qa(doc, rng, depth=None, exclude=(), rows=None):
    """rows: consider only these rows."""
    text = doc.text()
    for i in (rows if rows is not None else _candidate_rows(doc, rng, depth, False, exclude)):
        line = doc.row_text(i)
        words = [m.span() for m in _WORD.finditer(line)]
        q = int(rng.integers(6, 11))
        if len(words) < q + CONTINUE_WORDS:
            continue
        for _ in range(3):
            s = int(rng.integers(0, len(words) - q - CONTINUE_WORDS + 1))
            quote = line[words[s][0]:words[s + q - 1][1]]
            ans = line[words[s + q][0]:words[s + q + CONTINUE_WORDS - 1][1]]
            if len(quote) < 20 or text.count(quote) != 1:
                continue
            return QA("continue", CONTINUE_QUESTION.format(quote=quote), ans,
                      doc.depth_of_row(i), i)
    return None


def section_qa(doc, rng, depth=None, exclude=()):
    if not doc.sectioned or len(doc.sections) < 2:
        return None
    text = doc.text()
    for i in _candidate_rows(doc, rng, depth, True, exclude):
        line = doc.row_text(i).strip()
        words = [m.span() for m in _WORD.finditer(line)]
        if len(words) < 3 or len(line) < 16:
            continue
        if len(words) <= 14 and len(line) <= 160:
            quote = line
        else:
            n = int(rng.integers(8, 15))
            if len(words) < n:
                continue
            s = int(rng.integers(0, len(words) - n + 1))
            quote = line[words[s][0]:words[s + n - 1][1]]
        if text.count(quote) != 1:
            continue
        kind, name = doc.sections[doc.rows[i][2]]
        return QA("section", SECTION_QUESTION.format(quote=quote), name, doc.depth_of_row(i), i)
    return None


# ---------------------------------------------------------------------------- sequences
def needle_cost(tokenizer):
    return len(tokenizer.encode(needle_line("Xxxxxxxxxx Xxxxxxxxxx", "99999") + "\n")) + 4


_SAMPLE_QUOTE = "and the object is to be found in the middle of the"
_SAMPLE_ANSWER = "they are well read; for they"
_reserve_cache = {}


def qa_reserve(tokenizer):
    """Tokens set aside for a continue/section question and its answer (a generous
    estimate; a pair that still does not fit is dropped)."""
    key = id(tokenizer)
    if key not in _reserve_cache:
        q = len(tokenizer.encode(question_text(SECTION_QUESTION.format(quote=_SAMPLE_QUOTE))))
        a = len(tokenizer.encode(answer_text(_SAMPLE_ANSWER))) + 1
        _reserve_cache[key] = int(1.4 * (q + a)) + 8
    return _reserve_cache[key]


def encode_qa(tokenizer, qa):
    """(question tokens, answer tokens incl. EOS)."""
    q = tokenizer.encode(question_text(qa.question))
    a = tokenizer.encode(answer_text(qa.answer)) + [EOS_ID]
    return q, a


class Example:
    """One training row: input ids, per-target weights and the answer spans."""
    __slots__ = ("ids", "weights", "spans", "doc_tokens")

    def __init__(self, ids, weights, spans, doc_tokens):
        self.ids, self.weights, self.spans, self.doc_tokens = ids, weights, spans, doc_tokens


def _new_needles(rng, split, n):
    names, values = [], []
    while len(names) < n:
        name = make_name(rng, split)
        if name not in names:
            names.append(name)
    while len(values) < n:
        value = make_value(rng, split)
        if value not in values:
            values.append(value)
    return list(zip(names, values))


def make_example(corpus, tokenizer, rng, seq_len, split="train", *, needles=(1, 4),
                 questions=(1, 3), task_weights=None, sectioned_p=0.7, answer_weight=5.0,
                 sources=None, needle_lm_weight=0.0, question_weight=0.0, short_units_p=None,
                 scramble_p=0.0, rename_sections_p=0.0):
    """A row of at most seq_len tokens: [BOS] doc (Q A EOS)+; the caller pads it.
    Returns an Example whose weights[t] is the loss weight of predicting ids[t + 1]
    (length len(ids) - 1) and spans [(task, start, end)]: target indices t in [start, end)
    predict the answer tokens and the EOS.
    Against answers from memory (a small model trained for many epochs learns its training
    text): scramble_p, the chance that a continue question is asked about a line whose words
    were shuffled (no language-model loss on that line); rename_sections_p, the chance that
    a sectioned document's headers get invented names."""
    task_weights = task_weights or {"kv": 0.5, "continue": 0.25, "section": 0.25}
    nq = int(rng.integers(questions[0], questions[1] + 1))
    names = sorted(task_weights)
    p = np.asarray([task_weights[t] for t in names], dtype=np.float64)
    tasks = [names[int(k)] for k in rng.choice(len(names), size=nq, p=p / p.sum())]
    n_kv = sum(t == "kv" for t in tasks)
    n_needles = max(n_kv, int(rng.integers(needles[0], needles[1] + 1))) if needles[1] > 0 \
        else n_kv
    sectioned = bool(rng.random() < sectioned_p)
    if short_units_p is None:
        short_units_p = 0.5 if seq_len <= 1024 else 0.0
    max_unit_lines = int(rng.integers(2, 9)) if rng.random() < short_units_p else None
    plan = _new_needles(rng, split, n_needles)
    needle_rows = [np.asarray(tokenizer.encode(needle_line(n, v) + "\n")) for n, v in plan]
    kv_cost = [len(tokenizer.encode(question_text(KV_QUESTION.format(name=n)))) +
               len(tokenizer.encode(answer_text(v))) + 1 for n, v in plan]

    def room():  # exact room for the kv questions (at least one: the fallback)
        return 1 + sum(len(r) for r in needle_rows) + sum(sorted(kv_cost)[-max(1, n_kv):]) \
            + qa_reserve(tokenizer) * sum(t != "kv" for t in tasks)
    while room() > 0.6 * seq_len and (len(plan) > max(1, n_kv) or len(tasks) > 1):
        if len(plan) > max(1, n_kv):       # too many needles for a short row
            plan.pop(), needle_rows.pop(), kv_cost.pop()
        else:
            t = tasks.pop()
            if t == "kv":
                n_kv -= 1
                if len(plan) > 1:  # keep one needle for the fallback question
                    plan.pop(), needle_rows.pop(), kv_cost.pop()
    reserve = room()
    rename = None
    if sectioned and rename_sections_p > 0 and rng.random() < rename_sections_p:
        invented = {}  # one invented name per unit within the document

        def rename(kind, name):
            if name not in invented:
                invented[name] = invented_section_name(rng, split, kind, name)
            return invented[name]
    doc = build_haystack(corpus, tokenizer, rng, max(16, seq_len - reserve), sectioned=sectioned,
                         sources=sources, max_unit_lines=max_unit_lines, rename=rename)
    for name, value in plan:
        doc.insert_needle(int(rng.integers(0, len(doc.rows) + 1)), name, value)
    needles_list = list(doc.needles)
    rng.shuffle(needles_list)
    qas, used = [], set()
    for t in tasks:
        qa = None
        if t == "continue":
            qa = continue_qa(doc, rng, exclude=used)
            if qa is not None and scramble_p > 0 and rng.random() < scramble_p:
                i, old = qa.row, doc.rows[qa.row]
                doc.scramble_row(i, rng)
                qa = continue_qa(doc, rng, rows=[i])
                if qa is None:  # no unique quote in the shuffled line: restore it
                    doc.rows[i] = old
                    doc._dirty()
        elif t == "section":
            qa = section_qa(doc, rng, exclude=used)
        if t == "kv" or qa is None:
            if not needles_list:
                continue
            name, value = needles_list.pop()
            qa = kv_qa(doc, name, value)
        used.add(qa.row)
        qas.append(qa)
    doc_tok = doc.tokens()
    ids = [BOS_ID] + doc_tok.tolist()
    w = [1.0] * len(ids)      # w[i] = weight of token ids[i] as a target
    w[0] = 0.0
    for i, r in enumerate(doc.rows):
        lm_weight = {ROW_NEEDLE: needle_lm_weight, ROW_SCRAMBLED: 0.0}.get(r[0], 1.0)
        if lm_weight != 1.0:
            a = 1 + int(doc.starts[i])
            for j in range(a, a + len(r[3])):
                w[j] = lm_weight
    spans = []
    if qas and all(len(ids) + sum(map(len, encode_qa(tokenizer, qa))) > seq_len for qa in qas) \
            and needles_list:
        qas.append(kv_qa(doc, *needles_list.pop()))   # nothing fits: ask a needle instead
    for qa in qas:
        q, a = encode_qa(tokenizer, qa)
        if len(ids) + len(q) + len(a) > seq_len:
            continue
        ids += q
        w += [question_weight] * len(q)
        start = len(ids)
        ids += a
        w += [answer_weight] * len(a)
        spans.append((qa.task, start - 1, start - 1 + len(a)))  # target index = pos - 1
    ids = np.asarray(ids, dtype=np.int64)
    weights = np.asarray(w[1:], dtype=np.float32)
    return Example(ids, weights, spans, len(doc_tok) + 1)


# ---------------------------------------------------------------------------- evaluation
def make_eval_document(corpus, tokenizer, rng, n_tokens, *, source=None, n_needles=4,
                       n_continue=4, n_section=4, sectioned=True, mix_sources=True,
                       split="heldout"):
    """A held-out document of about n_tokens tokens with needles at evenly spread depths,
    and its questions at evenly spread depths. Returns (Document, [QA])."""
    needle_tokens = n_needles * needle_cost(tokenizer)
    doc = build_haystack(corpus, tokenizer, rng, max(16, n_tokens - 1 - needle_tokens),
                         source=source, sectioned=sectioned, mix_sources=mix_sources)
    for k, (name, value) in enumerate(_new_needles(rng, split, n_needles)):
        doc.insert_needle(doc.row_at_depth((k + 0.5) / n_needles), name, value)
    qas = [kv_qa(doc, n, v) for n, v in doc.needles]
    used = set()
    for k in range(n_continue):
        qa = continue_qa(doc, rng, depth=(k + 0.5) / n_continue, exclude=used)
        if qa is not None:
            used.add(qa.row)
            qas.append(qa)
    for k in range(n_section):
        qa = section_qa(doc, rng, depth=(k + 0.5) / n_section, exclude=used)
        if qa is not None:
            used.add(qa.row)
            qas.append(qa)
    return doc, qas


def depth_bucket(depth, n=5):
    k = min(n - 1, int(depth * n))
    return "%d-%d%%" % (100 * k // n, 100 * (k + 1) // n)
