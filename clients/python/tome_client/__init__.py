"""Python client of Tome (tomed's tome.v1 gRPC API).

    from tome_client import TomeClient
    with TomeClient("127.0.0.1:7070", api_key="...") as tome:
        doc = tome.ingest_file("book.txt")
        for text in (stream := tome.ask(doc.id, "Who is the narrator?")):
            print(text, end="", flush=True)
        print(stream.summary.citations)

Stubs are generated on first import with grpc_tools (python3-grpc-tools); see _stubs.py.
"""

from . import ingest
from .client import (AskStream, IngestionFailed, TomeClient, TomeError, pb,
                     read_credentials)

__all__ = ["AskStream", "IngestionFailed", "TomeClient", "TomeError", "ingest", "pb",
           "read_credentials"]
