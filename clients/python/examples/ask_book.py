#!/usr/bin/env python3
"""Ingests a book (or a source tree) into tomed and asks a question about it.

    PYTHONPATH=clients/python python3 clients/python/examples/ask_book.py \
        tools/samples/lighthouse.txt "What is the access code for Elias Varga?"

Options: --server HOST:PORT (default 127.0.0.1:7070), --api-key KEY (default
$TOME_API_KEY), --document ID (ask an already ingested document instead of PATH),
--session (ask within a new session), --max-tokens N.
"""

import argparse
import sys

from tome_client import TomeClient, TomeError


def show_progress(p):
    done = 100 * p.ingested_tokens // p.num_tokens if p.num_tokens else 0
    eta = f" ETA {p.eta_seconds:.0f}s" if p.eta_seconds > 0 else ""
    print(f"\r[{'#' * (done * 30 // 100):<30}] {done:3d}% {p.ingested_tokens}/{p.num_tokens} "
          f"tokens {p.tokens_per_second:.0f} tok/s{eta}\x1b[K", end="", file=sys.stderr,
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", help="a book (text file) or a source directory")
    parser.add_argument("question")
    parser.add_argument("--server", default="127.0.0.1:7070")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--document", help="ask this document instead of ingesting PATH")
    parser.add_argument("--session", action="store_true", help="ask within a new session")
    parser.add_argument("--max-tokens", type=int, default=0)
    args = parser.parse_args()
    if not args.path and not args.document:
        parser.error("give PATH or --document")

    with TomeClient(args.server, api_key=args.api_key) as tome:
        try:
            if args.document:
                doc = tome.get_document(args.document)
            else:
                import os
                ingest = tome.ingest_tree if os.path.isdir(args.path) else tome.ingest_file
                doc = ingest(args.path, progress=show_progress)
                print(file=sys.stderr)
            print(f"document {doc.id} \"{doc.name}\": {doc.num_tokens} tokens, "
                  f"{doc.num_sections} sections", file=sys.stderr)

            if args.session:
                session = tome.create_session(doc.id)
                stream = tome.ask(None, args.question, session_id=session.id,
                                  max_tokens=args.max_tokens)
            else:
                stream = tome.ask(doc.id, args.question, max_tokens=args.max_tokens)
            for text in stream:  # the answer, as it is generated
                print(text, end="", flush=True)
            print()
            summary = stream.summary
            for i, c in enumerate(summary.citations, 1):
                where = c.section or "document"
                lines = (f"line {c.line_begin}" if c.line_begin == c.line_end
                         else f"lines {c.line_begin}-{c.line_end}")
                print(f"  [{i}] {where}, document {lines} ({100 * c.weight:.0f}%)")
            t = summary.timings
            print(f"[{summary.generated_tokens} tokens, first token {t.first_token_ms:.0f} ms, "
                  f"total {t.total_ms:.0f} ms, state from {summary.state_source}]",
                  file=sys.stderr)
        except TomeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
