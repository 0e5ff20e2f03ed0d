"""TomeClient: the tome.v1 gRPC API (documents, questions, sessions, admin) from Python."""

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, Union

import grpc

from . import _stubs, ingest

pb = _stubs.load()  # generated modules: pb.documents_pb2, pb.query_pb2_grpc, ...

Text = Union[str, bytes]
Progress = Callable[["pb.documents_pb2.IngestionProgress"], None]

_QUOTA_FIELDS = ("max_stored_bytes", "max_documents", "max_concurrent_requests",
                 "max_tokens_per_minute", "session_ttl_seconds")


class TomeError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "TomeError":
        return cls(error.code(), error.details() or "")


class IngestionFailed(TomeError):
    """The document's ingestion ended FAILED (its `error` is in details)."""

    def __init__(self, document_id: str, details: str):
        super().__init__(grpc.StatusCode.ABORTED, f"ingestion of {document_id} failed: {details}")
        self.document_id = document_id


def _encode(text: Text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


class AskStream:
    """The answer to one question, as it streams: iterate for the text deltas (str); after
    the iteration `summary` holds the AskSummary (citations, timings, token counts).
    `cancel()` stops the server's work at once."""

    def __init__(self, call):
        self._call = call
        self._parts: List[str] = []
        self.summary = None

    def __iter__(self) -> Iterator[str]:
        try:
            for response in self._call:
                kind = response.WhichOneof("kind")
                if kind == "delta":
                    self._parts.append(response.delta.text)
                    yield response.delta.text
                elif kind == "summary":
                    self.summary = response.summary
        except grpc.RpcError as e:
            raise TomeError.from_rpc(e) from None

    def cancel(self) -> None:
        self._call.cancel()

    @property
    def answer(self) -> str:
        return self.summary.answer if self.summary is not None else "".join(self._parts)

    def result(self) -> Tuple[str, "pb.query_pb2.AskSummary"]:
        """Reads the rest of the stream; returns (answer, summary)."""
        for _ in self:
            pass
        return self.answer, self.summary


class TomeClient:
    """A connection to tomed.

    api_key (default: $TOME_API_KEY) is sent as `authorization: Bearer <key>` on every call,
    admin_key (default: $TOME_ADMIN_KEY) on AdminService calls. timeout: default deadline
    in seconds of each call (None: none). Errors raise TomeError.
    """

    def __init__(self, address: str = "127.0.0.1:7070", api_key: Optional[str] = None,
                 admin_key: Optional[str] = None, timeout: Optional[float] = None,
                 channel: Optional[grpc.Channel] = None):
        self.address = address
        self.api_key = api_key if api_key is not None else os.environ.get("TOME_API_KEY")
        self.admin_key = (admin_key if admin_key is not None
                          else os.environ.get("TOME_ADMIN_KEY"))
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._documents = pb.documents_pb2_grpc.DocumentServiceStub(self._channel)
        self._queries = pb.query_pb2_grpc.QueryServiceStub(self._channel)
        self._sessions = pb.sessions_pb2_grpc.SessionServiceStub(self._channel)
        self._admin = pb.admin_pb2_grpc.AdminServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "TomeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------

    def _metadata(self, admin: bool = False):
        key = self.admin_key if admin else self.api_key
        return (("authorization", f"Bearer {key}"),) if key else ()

    def _call(self, method, request, admin: bool = False, timeout: Optional[float] = None):
        try:
            return method(request, metadata=self._metadata(admin),
                          timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as e:
            raise TomeError.from_rpc(e) from None

    # --- documents --------------------------------------------------------------------

    def create_document(self, name: str):
        return self._call(self._documents.CreateDocument,
                          pb.documents_pb2.CreateDocumentRequest(name=name))

    def append_text(self, document_id: str,
                    text: Union[Text, Iterable[Tuple[Optional[str], Text]]]):
        """Appends text as a new version, in one AppendText stream. `text` is a str/bytes, or
        an iterable of (section, text) pairs: each pair with a section name starts a named
        section (a file, a chapter); None or "" continues the current one. Returns the
        AppendTextResponse (appended bytes and tokens, the document)."""
        sections = [("", text)] if isinstance(text, (str, bytes, bytearray)) else text

        def requests():
            first = True
            encoded = ((section or "", _encode(part)) for section, part in sections)
            for section, piece in ingest.pieces(encoded):
                request = pb.documents_pb2.AppendTextRequest(text=piece, section=section)
                if first:
                    request.document_id = document_id
                    first = False
                yield request

        return self._call(self._documents.AppendText, requests())

    def get_document(self, document_id: str):
        return self._call(self._documents.GetDocument,
                          pb.documents_pb2.GetDocumentRequest(document_id=document_id))

    def list_documents(self, include_shared: bool = False) -> list:
        """All documents (every page), in creation order."""
        documents, token = [], ""
        while True:
            page = self._call(self._documents.ListDocuments, pb.documents_pb2.ListDocumentsRequest(
                page_token=token, include_shared=include_shared))
            documents.extend(page.documents)
            token = page.next_page_token
            if not token:
                return documents

    def delete_document(self, document_id: str) -> None:
        self._call(self._documents.DeleteDocument,
                   pb.documents_pb2.DeleteDocumentRequest(document_id=document_id))

    def share_document(self, document_id: str, tenant_ids: Iterable[str] = (),
                       public: bool = False):
        """Sets exactly who may read the document (the owner's call); returns it."""
        request = pb.documents_pb2.ShareDocumentRequest(document_id=document_id, public=public)
        request.tenant_ids.extend(tenant_ids)
        return self._call(self._documents.ShareDocument, request)

    def watch_ingestion(self, document_id: str) -> Iterator:
        """IngestionProgress messages until the document is READY or FAILED."""
        call = self._documents.WatchIngestion(
            pb.documents_pb2.WatchIngestionRequest(document_id=document_id),
            metadata=self._metadata(), timeout=self.timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            raise TomeError.from_rpc(e) from None

    def wait_until_ready(self, document_id: str, progress: Optional[Progress] = None):
        """Follows ingestion (calling `progress` with each IngestionProgress) and returns the
        READY document; raises IngestionFailed if it failed."""
        last = None
        for last in self.watch_ingestion(document_id):
            if progress:
                progress(last)
        if last is not None and last.status == pb.documents_pb2.DOCUMENT_STATUS_FAILED:
            raise IngestionFailed(document_id, last.error)
        return self.get_document(document_id)

    def _ingest(self, name: str, sections, wait: bool, progress: Optional[Progress]):
        document = self.create_document(name)
        try:
            self.append_text(document.id, sections)
        except Exception:
            try:
                self.delete_document(document.id)  # it would stay empty
            except TomeError:
                pass
            raise
        if wait:
            return self.wait_until_ready(document.id, progress)
        return self.get_document(document.id)

    def ingest_file(self, path: str, name: Optional[str] = None, wait: bool = True,
                    detect_chapters: bool = True, progress: Optional[Progress] = None):
        """Creates a document from a text file (a book): one section per detected chapter.
        Returns the document (READY if wait)."""
        text = Path(path).read_bytes()
        sections = [(n, ingest.chapter_section_text(n, text[b:e]))
                    for n, b, e in ingest.book_spans(text, detect_chapters)]
        return self._ingest(name or Path(path).name, sections, wait, progress)

    def ingest_tree(self, path: str, name: Optional[str] = None, wait: bool = True,
                    max_file_bytes: int = ingest.DEFAULT_MAX_FILE_BYTES,
                    excludes: Iterable[str] = (), use_gitignore: bool = True,
                    progress: Optional[Progress] = None):
        """Creates a document from a source tree: one section per text file, as
        `tome ingest DIR` does. Returns the document (READY if wait); the skipped paths are
        in ingest.list_tree(path)."""
        listing = ingest.list_tree(path, max_file_bytes, use_gitignore, list(excludes))
        if not listing.files:
            raise ValueError(f"no text files to ingest under {path}")

        def sections():
            for rel, _ in listing.files:
                content = Path(path, rel).read_bytes()
                if ingest.binary_reason(content):
                    continue  # changed since it was listed
                yield rel, ingest.file_section_text(rel, content)

        return self._ingest(name or Path(path).resolve().name, sections(), wait, progress)

    # --- questions --------------------------------------------------------------------

    def ask(self, document_id: Optional[str], question: Text, *, session_id: str = "",
            version: int = 0, max_tokens: int = 0, temperature: float = 0.0,
            top_p: float = 0.0, seed: int = 0, max_citations: int = 0,
            no_citations: bool = False, timeout: Optional[float] = None) -> AskStream:
        """Asks a question about a document (version 0: the latest), or within a session
        (document_id None, session_id set). Returns an AskStream: iterate it for the answer
        as it is generated; then .summary has citations and timings."""
        request = pb.query_pb2.AskRequest(
            document_id=document_id or "", question=_encode(question), session_id=session_id,
            version=version, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=seed, max_citations=max_citations, no_citations=no_citations)
        call = self._queries.Ask(request, metadata=self._metadata(),
                                 timeout=timeout if timeout is not None else self.timeout)
        return AskStream(call)

    def answer(self, document_id: Optional[str], question: Text, **options):
        """ask() to the end: returns (answer, summary)."""
        return self.ask(document_id, question, **options).result()

    # --- sessions ---------------------------------------------------------------------

    def create_session(self, document_id: str, version: int = 0):
        return self._call(self._sessions.CreateSession, pb.sessions_pb2.CreateSessionRequest(
            document_id=document_id, document_version=version))

    def get_session(self, session_id: str):
        return self._call(self._sessions.GetSession,
                          pb.sessions_pb2.GetSessionRequest(session_id=session_id))

    def list_sessions(self, document_id: str = "") -> list:
        return list(self._call(self._sessions.ListSessions, pb.sessions_pb2.ListSessionsRequest(
            document_id=document_id)).sessions)

    def fork_session(self, session_id: str):
        return self._call(self._sessions.ForkSession,
                          pb.sessions_pb2.ForkSessionRequest(session_id=session_id))

    def delete_session(self, session_id: str) -> None:
        self._call(self._sessions.DeleteSession,
                   pb.sessions_pb2.DeleteSessionRequest(session_id=session_id))

    # --- admin (admin_key) ------------------------------------------------------------

    @staticmethod
    def _quotas(base=None, **quotas):
        unknown = set(quotas) - set(_QUOTA_FIELDS)
        if unknown:
            raise TypeError(f"unknown quotas: {', '.join(sorted(unknown))}")
        q = pb.admin_pb2.Quotas()
        if base is not None:
            q.CopyFrom(base)
        for field, value in quotas.items():
            if value is not None:
                setattr(q, field, value)
        return q

    def create_tenant(self, name: str, **quotas):
        """Quotas as keywords: max_stored_bytes, max_documents, max_concurrent_requests,
        max_tokens_per_minute, session_ttl_seconds (0: no limit / server default)."""
        return self._call(self._admin.CreateTenant, pb.admin_pb2.CreateTenantRequest(
            name=name, quotas=self._quotas(**quotas)), admin=True)

    def get_tenant(self, tenant_id: str):
        return self._call(self._admin.GetTenant,
                          pb.admin_pb2.GetTenantRequest(tenant_id=tenant_id), admin=True)

    def list_tenants(self) -> list:
        return list(self._call(self._admin.ListTenants, pb.admin_pb2.ListTenantsRequest(),
                               admin=True).tenants)

    def set_quotas(self, tenant_id: str, replace: bool = False, **quotas):
        """Changes the named quotas, keeping the others (replace=True: the others become 0,
        as SetQuotas itself does). Returns the tenant."""
        base = None if replace else self.get_tenant(tenant_id).quotas
        return self._call(self._admin.SetQuotas, pb.admin_pb2.SetQuotasRequest(
            tenant_id=tenant_id, quotas=self._quotas(base, **quotas)), admin=True)

    def create_api_key(self, tenant_id: str, name: str = ""):
        """A new key; its .secret is returned only now."""
        return self._call(self._admin.CreateApiKey, pb.admin_pb2.CreateApiKeyRequest(
            tenant_id=tenant_id, name=name), admin=True)

    def list_api_keys(self, tenant_id: str) -> list:
        return list(self._call(self._admin.ListApiKeys, pb.admin_pb2.ListApiKeysRequest(
            tenant_id=tenant_id), admin=True).keys)

    def revoke_api_key(self, key_id: str) -> None:
        self._call(self._admin.RevokeApiKey, pb.admin_pb2.RevokeApiKeyRequest(key_id=key_id),
                   admin=True)


def read_credentials(path: str) -> dict:
    """Reads tomed's <data_dir>/bootstrap-credentials (KEY=value lines) into a dict:
    {"TOME_ADMIN_KEY": ..., "TOME_API_KEY": ...}."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values
