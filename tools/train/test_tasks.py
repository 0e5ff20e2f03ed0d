"""Tests of the data pipeline: task formats, sequence layout, train/eval disjointness, and
(with the real tokenizer, when .devdata/train exists and sentencepiece is installed) that
assembled token sequences equal what the server's tokenizer makes of the text.

    /usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'
"""

import os
import re
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus as corpus_mod  # noqa: E402
import tasks  # noqa: E402
import tokenizer as tok_mod  # noqa: E402

DATA = os.path.join(HERE, "..", "..", ".devdata", "train")

PROSE = ("It is a truth universally acknowledged that a single man in possession of a good "
         "fortune must be in want of a wife and however little known the feelings or views "
         "of such a man may be on his first entering a neighbourhood")
CODE = ["static int foo(int x)", "{", "\tif (x > 3) /* compare against the limit here */",
        "\t\treturn x * 2 + some_long_function_name(x, 7);", "\treturn 0;", "}", ""]


def synthetic_units():
    words = PROSE.split()
    units = []
    rng = np.random.default_rng(0)
    for c in range(12):
        lines = []
        for _ in range(12):
            k = int(rng.integers(8, len(words)))
            start = int(rng.integers(0, len(words) - k + 1))
            lines.append("%d %s %d" % (c, " ".join(words[start:start + k]), int(rng.integers(1e6))))
        units.append({"source": "book", "kind": "Chapter", "name": "Book %d" % (c + 1),
                      "group": "Book", "lines": lines})
    for f in range(6):
        units.append({"source": "code", "kind": "File", "name": "src/file%d.c" % f,
                      "group": "code", "lines": [ln.replace("foo", "foo%d_%d" % (f, i))
                                                 for i in range(8) for ln in CODE]})
    return units


class Fixture:
    tok = tok_mod.ByteTokenizer()
    corpus = corpus_mod.Corpus.from_units(synthetic_units(), tok)


def decode_span(tok, ids, a, b):
    return tok.decode([i for i in ids[a:b] if i != tasks.EOS_ID])


class NamesTest(unittest.TestCase):
    def test_train_and_eval_names_and_values_are_disjoint(self):
        rng = np.random.default_rng(1)
        train_words, eval_words, train_vals, eval_vals = set(), set(), set(), set()
        for _ in range(3000):
            train_words.update(tasks.make_name(rng, "train").split())
            eval_words.update(tasks.make_name(rng, "heldout").split())
            train_vals.add(tasks.make_value(rng, "train"))
            eval_vals.add(tasks.make_value(rng, "heldout"))
        self.assertFalse(train_words & eval_words)
        self.assertFalse(train_vals & eval_vals)
        self.assertGreater(len(eval_words), 200)
        self.assertTrue(all(tasks.is_eval_word(w) for w in eval_words))
        self.assertFalse(any(tasks.is_eval_word(w) for w in train_words))
        for v in train_vals | eval_vals:
            self.assertRegex(v, r"^[1-9]\d{4}$")
        for w in train_words | eval_words:
            self.assertRegex(w, r"^[A-Z][a-z]+$")

    def test_templates(self):
        self.assertEqual(tasks.needle_line("Velmor Quintash", "40213"),
                         "The access code for Velmor Quintash is 40213.")
        self.assertEqual(tasks.question_text("Q?"), "\nQuestion: Q?\nAnswer:")
        self.assertEqual(tasks.answer_text("40213"), " 40213")


class ExampleTest(unittest.TestCase):
    def check_rows(self, rng, **kw):
        """Builds 60 rows and checks their layout, weights and answers; returns the tasks
        seen and [(task, answer, text before the answer's line, row text)]."""
        tok, c = Fixture.tok, Fixture.corpus
        seen, found = set(), []
        for _ in range(60):
            L = int(rng.choice([256, 512, 2048]))
            ex = tasks.make_example(c, tok, rng, L, "train", needles=(2, 5), questions=(1, 4),
                                    **kw)
            ids = ex.ids.tolist()
            self.assertLessEqual(len(ids), L)
            self.assertEqual(ids[0], tasks.BOS_ID)
            self.assertEqual(len(ex.weights), len(ids) - 1)
            self.assertGreater(len(ex.spans), 0)
            text = tok.decode(ids[1:ex.doc_tokens])
            for task, s, e in ex.spans:
                seen.add(task)
                # targets s..e-1 are ids[s+1..e]: " " + answer, then EOS
                self.assertEqual(ids[e], tasks.EOS_ID)
                self.assertTrue(np.all(ex.weights[s:e] == 5.0))
                ans = decode_span(tok, ids, s + 1, e + 1)
                self.assertTrue(ans.startswith(" "))
                before = tok.decode(ids[:s + 1][-600:])
                self.assertTrue(before.endswith("\nAnswer:"))
                q = before[before.rindex("\nQuestion: ") + 11:-len("\nAnswer:")]
                if task == "kv":
                    name = re.match(r"What is the access code for (.*)\?$", q).group(1)
                    self.assertIn(tasks.needle_line(name, ans.strip()) + "\n", text)
                elif task == "continue":
                    quote = re.match(r'Which six words follow "(.*)"\?$', q, re.S).group(1)
                    self.assertEqual(text.count(quote), 1)
                    after = text[text.index(quote) + len(quote):]
                    self.assertEqual(after.split("\n")[0].split()[:6], ans.split())
                    self.assertTrue(after.startswith(" ") or after.startswith("\t"))
                    pos = text.index(quote)
                    line_start = text.rfind("\n", 0, pos) + 1
                    line = text[line_start:text.index("\n", pos)]
                    # the line's tokens and their LM weights (1 for text, 0 if scrambled)
                    a = len(tok.encode(text[:line_start])) + 1
                    found.append((task, ans, line, ex.weights[a - 1:a - 1 + len(tok.encode(line))]))
                else:
                    quote = re.match(r'Which section contains the text "(.*)"\?$', q,
                                     re.S).group(1)
                    self.assertEqual(text.count(quote), 1)
                    pos = text.index(quote)
                    header = re.findall(r"=== (?:File|Chapter): (.*) ===\n", text[:pos])[-1]
                    self.assertEqual(header, ans.strip())
                    found.append((task, ans, header, None))
            # needle lines carry no LM loss, the document does
            self.assertTrue((ex.weights[:ex.doc_tokens - 1] <= 1.0).all())
        return seen, found

    def test_layout_weights_and_answers(self):
        seen, found = self.check_rows(np.random.default_rng(2))
        self.assertEqual(seen, {"kv", "continue", "section"})
        corpus_lines = {Fixture.corpus.line_text(i, Fixture.tok)
                        for i in range(len(Fixture.corpus.line_len))}
        for task, _, line, weights in found:
            if task == "continue":
                self.assertIn(line, corpus_lines)
                self.assertTrue(np.all(weights == 1.0))

    def test_scrambled_lines_and_invented_section_names(self):
        """Questions that memory cannot answer: the continue line is its corpus line's words
        shuffled, with no language-model loss; section names are invented, same shape."""
        seen, found = self.check_rows(np.random.default_rng(12), scramble_p=1.0,
                                      rename_sections_p=1.0,
                                      task_weights={"continue": 0.5, "section": 0.5})
        self.assertEqual(seen & {"continue", "section"}, {"continue", "section"})
        c, tok = Fixture.corpus, Fixture.tok
        corpus_lines = [c.line_text(i, tok) for i in range(len(c.line_len))]
        bags = {tuple(sorted(ln.split())) for ln in corpus_lines}
        names = {u["name"] for u in synthetic_units()}
        n_scrambled = 0
        for task, ans, line, weights in found:
            if task == "continue":
                self.assertIn(tuple(sorted(line.split())), bags)
                if line not in corpus_lines:
                    n_scrambled += 1
                    self.assertTrue(np.all(weights == 0.0))
            else:
                name = ans.strip()
                self.assertNotIn(name, names)
                if name.startswith("src/"):
                    self.assertRegex(name, r"^src/[a-z]+/[a-z]+\.c$")
                else:
                    self.assertRegex(name, r"^[A-Z][a-z]+ \d+$")
        self.assertGreater(n_scrambled, 10)

    def test_needle_values_in_training_rows_are_training_values(self):
        tok, c = Fixture.tok, Fixture.corpus
        rng = np.random.default_rng(3)
        for _ in range(20):
            ex = tasks.make_example(c, tok, rng, 512, "train", needles=(3, 5))
            text = tok.decode(ex.ids[1:ex.doc_tokens])
            for name, value in re.findall(r"The access code for (\w+ \w+) is (\d+)\.", text):
                self.assertFalse(tasks.is_eval_value(value))
                self.assertFalse(any(tasks.is_eval_word(w) for w in name.split()))


class EvalDocumentTest(unittest.TestCase):
    def test_depths_spread_and_eval_names(self):
        tok, c = Fixture.tok, Fixture.corpus
        rng = np.random.default_rng(4)
        doc, qas = tasks.make_eval_document(c, tok, rng, 6000, source="book", n_needles=5,
                                            n_continue=4, n_section=4)
        self.assertLessEqual(doc.num_tokens + 1, 6000)
        self.assertGreater(doc.num_tokens, 4000)
        kv = [q for q in qas if q.task == "kv"]
        self.assertEqual(len(kv), 5)
        for k, q in enumerate(sorted(kv, key=lambda q: q.depth)):
            self.assertAlmostEqual(q.depth, (k + 0.5) / 5, delta=0.05)
            self.assertTrue(tasks.is_eval_value(q.answer))
        self.assertGreaterEqual(sum(q.task == "continue" for q in qas), 3)
        self.assertGreaterEqual(sum(q.task == "section" for q in qas), 3)
        text = doc.text()
        self.assertEqual(text, "".join(doc.row_text(i) + "\n" for i in range(len(doc.rows))))

    def test_mixed_sources_when_one_runs_out(self):
        tok, c = Fixture.tok, Fixture.corpus
        doc, _ = tasks.make_eval_document(c, tok, np.random.default_rng(5), 20000,
                                          source="code", n_needles=2, n_continue=0,
                                          n_section=0)
        kinds = {k for k, _ in doc.sections}
        self.assertEqual(kinds, {"File", "Chapter"})


class CorpusTest(unittest.TestCase):
    def test_save_load_round_trip(self):
        c = Fixture.corpus
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.npz")
            corpus_mod.save_corpus(path, c.tokens, c.line_off, c.unit_line, c.meta)
            c2 = corpus_mod.Corpus.load(path)
            self.assertTrue(np.array_equal(c.tokens, c2.tokens))
            self.assertEqual(c.meta, c2.meta)
            self.assertEqual(c2.line_text(5, Fixture.tok), c.line_text(5, Fixture.tok))


@unittest.skipUnless(os.path.exists(os.path.join(DATA, "tokenizer.model")) and
                     os.path.exists(os.path.join(DATA, "heldout.npz")),
                     "prepared data (.devdata/train) not present")
class RealTokenizerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.tok = tok_mod.Tokenizer(os.path.join(DATA, "tokenizer.model"))
        except ImportError:
            raise unittest.SkipTest("sentencepiece not installed")
        cls.corpus = corpus_mod.Corpus.load(os.path.join(DATA, "heldout.npz"))

    def test_assembled_sequences_equal_server_tokenization(self):
        """[BOS] + Encode(doc) + Encode(question part) + Encode(" " + answer), as the server
        (engine/src/prompt.cc) tokenizes, equals the training row built from pre-tokenized
        lines and separately encoded needles/headers/questions."""
        tok = self.tok
        rng = np.random.default_rng(6)
        for _ in range(12):
            L = int(rng.choice([512, 4096]))
            # every second row: shuffled lines and invented section names (retokenized rows)
            p = float(_ % 2)
            ex = tasks.make_example(self.corpus, tok, rng, L, "heldout", needles=(1, 4),
                                    questions=(1, 3), scramble_p=p, rename_sections_p=p)
            ids = ex.ids.tolist()
            doc_text = tok.decode(ids[1:ex.doc_tokens])
            self.assertEqual(tok.encode(doc_text), ids[1:ex.doc_tokens])
            pos = ex.doc_tokens
            for task, s, e in ex.spans:
                q_ids = ids[pos:s + 1]
                a_ids = ids[s + 1:e]
                q_text = tok.decode(q_ids)
                self.assertTrue(q_text.startswith("\nQuestion: ") and q_text.endswith("\nAnswer:"))
                self.assertEqual(tok.encode(q_text), q_ids)
                a_text = tok.decode(a_ids)
                self.assertEqual(tok.encode(a_text), a_ids)
                # the whole prompt + answer text tokenizes the same in one piece
                whole = doc_text + q_text + a_text
                self.assertEqual(tok.encode(whole), ids[1:ex.doc_tokens] + q_ids + a_ids)
                pos = e + 1

    def test_round_trip_and_newline_token(self):
        tok = self.tok
        for s in ["a\nb", "  x\t\ty\n\n", "é😀 naïve", "The access code for A B is 12345."]:
            self.assertEqual(tok.decode(tok.encode(s)), s)
        self.assertEqual(tok.encode("\n"), [tok.nl_id])
        self.assertEqual(tok.encode("ab\ncd"), tok.encode("ab") + [tok.nl_id] + tok.encode("cd"))

    def test_tokenizer_check_file(self):
        import json
        with open(os.path.join(DATA, "tokenizer_check.json")) as f:
            for item in json.load(f):
                self.assertEqual(self.tok.encode(item["text"]), item["ids"])


if __name__ == "__main__":
    unittest.main()
