"""Pre-tokenized corpora (written by prepare_data.py, read by train.py, tasks.py, eval).

A corpus file (<split>.npz) holds
    tokens     uint16 [N]        token ids of all lines; every line ends with the "\\n" token
    line_off   uint32 [L + 1]    first token of each line (line_off[L] == N)
    unit_line  uint32 [U + 1]    first line of each unit (unit_line[U] == L)
    meta       uint8  [..]       UTF-8 JSON list, one {source, kind, name, group} per unit
A unit is one chapter (kind "Chapter") or one file/page (kind "File"); its text is the
concatenation of its lines (each with its "\\n"). The tokens of a line are exactly the
tokenizer's encoding of the line's text, so the text is recovered with Tokenizer.decode.
"""

import json

import numpy as np


def save_corpus(path, tokens, line_off, unit_line, meta):
    if int(line_off[-1]) >= 2 ** 32:
        raise ValueError("corpus too large for uint32 offsets")
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(path, tokens=np.asarray(tokens, dtype=np.uint16),
                        line_off=np.asarray(line_off, dtype=np.uint32),
                        unit_line=np.asarray(unit_line, dtype=np.uint32), meta=blob)


class Corpus:
    def __init__(self, tokens, line_off, unit_line, meta, name=""):
        self.tokens = tokens
        self.line_off = line_off.astype(np.int64)
        self.unit_line = unit_line.astype(np.int64)
        self.meta = meta
        self.name = name
        self.line_len = np.diff(self.line_off)
        self.by_source = {}
        for i, m in enumerate(meta):
            self.by_source.setdefault(m["source"], []).append(i)
        self.unit_tokens = self.line_off[self.unit_line[1:]] - self.line_off[self.unit_line[:-1]]

    @classmethod
    def load(cls, path):
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            return cls(z["tokens"], z["line_off"], z["unit_line"], meta, name=path)

    @classmethod
    def from_units(cls, units, tokenizer):
        """Build an in-memory corpus from [{source, kind, name, group, lines}] (tests)."""
        ids, line_off, unit_line, meta = [], [0], [0], []
        for u in units:
            for ln in u["lines"]:
                t = tokenizer.encode(ln) + [tokenizer.nl_id]
                ids.extend(t)
                line_off.append(line_off[-1] + len(t))
            unit_line.append(unit_line[-1] + len(u["lines"]))
            meta.append({k: u.get(k, "") for k in ("source", "kind", "name", "group")})
        return cls(np.asarray(ids, dtype=np.uint16), np.asarray(line_off, dtype=np.int64),
                   np.asarray(unit_line, dtype=np.int64), meta, name="<memory>")

    @property
    def num_units(self):
        return len(self.meta)

    @property
    def num_tokens(self):
        return int(self.tokens.size)

    def unit_lines(self, u):
        return int(self.unit_line[u]), int(self.unit_line[u + 1])

    def line_tokens(self, line):
        return self.tokens[self.line_off[line]:self.line_off[line + 1]]

    def lines_tokens(self, a, b):
        """Tokens of lines a..b-1 (contiguous)."""
        return self.tokens[self.line_off[a]:self.line_off[b]]

    def line_text(self, line, tokenizer):
        """Text of one line without its trailing newline."""
        return tokenizer.decode(self.tokens[self.line_off[line]:self.line_off[line + 1] - 1])
