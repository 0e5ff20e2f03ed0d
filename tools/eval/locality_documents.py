#!/usr/bin/python3
"""Held-out evaluation documents with their questions as JSON lines, for tools that run the
engine directly instead of a server (tests/bench/selection_locality.cc):

    /usr/bin/python3 tools/eval/locality_documents.py --lengths 32768 --docs 2 > docs.jsonl

Each line: {"length", "source", "text", "qas": [{"task", "question", "answer", "depth"}]},
built exactly as eval.py builds its documents (tasks.make_eval_document, same seeds).
Held-out text: --heldout (a corpus .npz or .jsonl of units; default DATA/heldout.npz if
prepared, else the few units in tools/eval/quick_heldout.jsonl, ~22K tokens, which longer
documents repeat)."""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

import corpus as corpus_mod  # noqa: E402
import tasks  # noqa: E402
import tokenizer as tok_mod  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, ".devdata", "train"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "engine", "models", "default",
                                                        "tokenizer.model"))
    ap.add_argument("--heldout", default=None)
    ap.add_argument("--lengths", default="32768")
    ap.add_argument("--docs", type=int, default=2)
    ap.add_argument("--needles", type=int, default=4)
    ap.add_argument("--continue-questions", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tok = tok_mod.Tokenizer(args.tokenizer)
    path = args.heldout or os.path.join(args.data, "heldout.npz")
    if not os.path.exists(path):
        path = os.path.join(HERE, "quick_heldout.jsonl")
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            heldout = corpus_mod.Corpus.from_units([json.loads(l) for l in f if l.strip()], tok)
    else:
        heldout = corpus_mod.Corpus.load(path)
    sources = sorted(heldout.by_source)
    for length in (int(x) for x in args.lengths.split(",") if x):
        for i in range(args.docs):
            rng = np.random.default_rng([args.seed, length, i])
            src = sources[i % len(sources)]
            doc, qas = tasks.make_eval_document(
                heldout, tok, rng, length, source=src, n_needles=args.needles,
                n_continue=args.continue_questions, n_section=0, sectioned=True,
                mix_sources=True)
            text = doc.text()
            # Held-out text shorter than the length: the document (needles too) repeated.
            copies = max(1, length // max(1, doc.num_tokens))
            text = "\n".join([text] * copies)
            print(json.dumps({"length": length, "source": src, "text": text,
                              "qas": [{"task": q.task, "question": q.question,
                                       "answer": q.answer, "depth": round(q.depth, 4)}
                                      for q in qas]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
