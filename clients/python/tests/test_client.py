"""TomeClient against a live tomed: starts the server from the build tree (TOMED_BINARY,
TOME_MODEL_DIR), exercises every RPC, and shuts it down.

Tenancy, sessions and sharing are tested when the server has them (it writes
<data_dir>/bootstrap-credentials); against a server without them those tests are skipped.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tome_client import TomeClient, TomeError, ingest, pb, read_credentials  # noqa: E402

TOMED = os.environ.get("TOMED_BINARY")
MODEL = os.environ.get("TOME_MODEL_DIR")
MAX_TOKENS = 12


def book_text(n_chapters: int = 3) -> str:
    parts = ["The Lighthouse\n\n"]
    for i in range(1, n_chapters + 1):
        parts.append(f"Chapter {i}\n")
        parts.extend(f"In chapter {i} the keeper counted {i * 7 + k} ships at dawn.\n"
                     for k in range(8))
    return "".join(parts)


@unittest.skipUnless(TOMED and MODEL, "set TOMED_BINARY and TOME_MODEL_DIR")
class TomeClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tome_client_test_")
        root = Path(cls.dir.name)
        port_file = root / "port"
        cls.log = open(root / "tomed.log", "wb")
        cls.server = subprocess.Popen(
            [TOMED, "--listen=127.0.0.1:0", f"--data_dir={root / 'data'}", f"--model={MODEL}",
             f"--port_file={port_file}", "--checkpoint_tokens=512",
             # No metrics port (servers without the flag ignore it).
             "--metrics_listen=", "--undefok=metrics_listen"],
            stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        port = 0
        while time.monotonic() < deadline and not port:
            if cls.server.poll() is not None:
                raise RuntimeError(f"tomed exited; see {root / 'tomed.log'}")
            try:
                port = int(port_file.read_text().strip() or 0)
            except (OSError, ValueError):
                time.sleep(0.05)
        if not port:
            cls.server.kill()
            raise RuntimeError("tomed did not start in 120 s")
        cls.address = f"127.0.0.1:{port}"
        credentials = root / "data" / "bootstrap-credentials"
        keys = read_credentials(credentials) if credentials.exists() else {}
        cls.api_key = keys.get("TOME_API_KEY", "")
        cls.admin_key = keys.get("TOME_ADMIN_KEY", "")
        cls.tome = TomeClient(cls.address, api_key=cls.api_key, admin_key=cls.admin_key,
                              timeout=300)

    @classmethod
    def tearDownClass(cls):
        cls.tome.close()
        cls.server.send_signal(signal.SIGTERM)
        try:
            cls.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cls.server.kill()
            cls.server.wait()
        cls.log.close()
        cls.dir.cleanup()

    def require_auth(self):
        if not self.admin_key:
            self.skipTest("server writes no bootstrap-credentials (no tenancy yet)")

    def skip_if_unimplemented(self, error: TomeError):
        if error.code == grpc.StatusCode.UNIMPLEMENTED:
            self.skipTest(f"server side not implemented: {error}")
        raise error

    def ready_document(self, sections, name="doc"):
        doc = self.tome.create_document(name)
        self.tome.append_text(doc.id, sections)
        return self.tome.wait_until_ready(doc.id)

    # --- documents and questions --------------------------------------------------------

    def test_append_sections_ask_and_delete(self):
        doc = self.tome.create_document("sections")
        self.assertEqual(doc.status, pb.documents_pb2.DOCUMENT_STATUS_EMPTY)
        response = self.tome.append_text(doc.id, [
            ("intro", "The keeper of the lighthouse was called Ada.\n" * 5),
            ("log", "Ada counted forty ships in the storm.\n" * 5),
            (None, "The storm ended at dawn.\n"),
        ])
        self.assertGreater(response.appended_tokens, 0)
        seen = []
        doc = self.tome.wait_until_ready(doc.id, progress=seen.append)
        self.assertTrue(seen)
        self.assertEqual(doc.status, pb.documents_pb2.DOCUMENT_STATUS_READY)
        self.assertEqual(doc.num_sections, 2)
        self.assertEqual(doc.ingested_tokens, doc.num_tokens)
        self.assertIn(doc.id, [d.id for d in self.tome.list_documents()])

        stream = self.tome.ask(doc.id, "Who kept the lighthouse?", max_tokens=MAX_TOKENS)
        deltas = list(stream)
        self.assertEqual("".join(deltas), stream.summary.answer)
        self.assertGreater(stream.summary.generated_tokens, 0)
        self.assertEqual(stream.summary.document_tokens, doc.num_tokens)
        for c in stream.summary.citations:
            self.assertIn(c.section, ("intro", "log"))
            self.assertLessEqual(1, c.line_begin)
            self.assertLessEqual(c.line_begin, c.line_end)
        # Greedy decoding: the convenience form gives the same answer.
        answer, summary = self.tome.answer(doc.id, "Who kept the lighthouse?",
                                           max_tokens=MAX_TOKENS)
        self.assertEqual(answer, stream.summary.answer)
        self.assertEqual(summary.document_prefill_tokens, 0)

        self.tome.delete_document(doc.id)
        with self.assertRaises(TomeError) as e:
            self.tome.get_document(doc.id)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_versions(self):
        doc = self.ready_document("First part of the text.\n" * 4)
        self.tome.append_text(doc.id, "Second part.\n" * 4)
        doc = self.tome.wait_until_ready(doc.id)
        self.assertEqual(doc.version, 2)
        self.assertEqual(len(doc.versions), 2)
        _, old = self.tome.answer(doc.id, "What is this?", version=1, max_tokens=4)
        _, new = self.tome.answer(doc.id, "What is this?", max_tokens=4)
        self.assertLess(old.document_tokens, new.document_tokens)
        with self.assertRaises(TomeError) as e:
            self.tome.answer(doc.id, "What?", version=99, max_tokens=4)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_ingest_file_detects_chapters(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "lighthouse.txt"
            path.write_text(book_text(3))
            doc = self.tome.ingest_file(str(path))
        self.assertEqual(doc.name, "lighthouse.txt")
        self.assertEqual(doc.status, pb.documents_pb2.DOCUMENT_STATUS_READY)
        self.assertEqual(doc.num_sections, 3)
        _, summary = self.tome.answer(doc.id, "How many ships?", max_tokens=MAX_TOKENS)
        for c in summary.citations:
            self.assertIn(c.section, ("", "Chapter 1", "Chapter 2", "Chapter 3"))

    def test_ingest_tree_one_section_per_file(self):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d) / "proj"
            (root / "src").mkdir(parents=True)
            (root / ".gitignore").write_text("*.o\n")
            (root / "src" / "main.c").write_text("int main() { return count_ships(); }\n")
            (root / "src" / "ships.c").write_text("int count_ships() { return 40; }\n")
            (root / "src" / "ships.o").write_bytes(b"\x7fELF\0\0")
            (root / "README.md").write_text("# Ships\nCounts ships.\n")
            listing = ingest.list_tree(str(root))
            doc = self.tome.ingest_tree(str(root))
        self.assertEqual(doc.name, "proj")
        self.assertEqual(doc.num_sections, len(listing.files))
        self.assertEqual(doc.num_sections, 4)  # .gitignore, README.md, src/main.c, src/ships.c
        _, summary = self.tome.answer(doc.id, "What does count_ships return?",
                                      max_tokens=MAX_TOKENS)
        for c in summary.citations:
            self.assertIn(c.section, [f for f, _ in listing.files])

    def test_errors(self):
        with self.assertRaises(TomeError) as e:
            self.tome.get_document("999999")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        doc = self.tome.create_document("errors")
        with self.assertRaises(TomeError) as e:
            self.tome.append_text(doc.id, b"caf\xe9")
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.tome.append_text(doc.id, "Some text.\n")
        with self.assertRaises(TomeError) as e:
            self.tome.answer(doc.id, "", max_tokens=4)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_cancel(self):
        doc = self.ready_document("A long story about ships.\n" * 10)
        stream = self.tome.ask(doc.id, "Tell me everything.", max_tokens=200)
        with self.assertRaises(TomeError) as e:
            for _ in stream:
                stream.cancel()
        self.assertEqual(e.exception.code, grpc.StatusCode.CANCELLED)

    # --- sessions -----------------------------------------------------------------------

    def test_sessions(self):
        doc = self.ready_document("Ada kept the lighthouse for forty years.\n" * 4)
        try:
            session = self.tome.create_session(doc.id)
        except TomeError as e:
            self.skip_if_unimplemented(e)
        self.assertEqual(session.document_id, doc.id)
        self.assertEqual(session.document_version, 1)
        _, first = self.tome.answer(None, "Who kept it?", session_id=session.id,
                                    max_tokens=MAX_TOKENS)
        self.assertEqual(first.session_id, session.id)
        self.assertEqual(first.turn, 1)
        _, second = self.tome.answer(None, "For how long?", session_id=session.id,
                                     max_tokens=MAX_TOKENS)
        self.assertEqual(second.turn, 2)
        self.assertEqual(self.tome.get_session(session.id).turns, 2)

        fork = self.tome.fork_session(session.id)
        self.assertNotEqual(fork.id, session.id)
        self.assertEqual(fork.parent_session_id, session.id)
        self.assertEqual(fork.turns, 2)
        _, forked = self.tome.answer(None, "And then?", session_id=fork.id,
                                     max_tokens=MAX_TOKENS)
        self.assertEqual(forked.turn, 3)
        self.assertEqual(self.tome.get_session(session.id).turns, 2)  # the original stays

        ids = [s.id for s in self.tome.list_sessions(doc.id)]
        self.assertCountEqual(ids, [session.id, fork.id])
        self.tome.delete_session(fork.id)
        with self.assertRaises(TomeError) as e:
            self.tome.get_session(fork.id)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    # --- tenants, keys, sharing, quotas ---------------------------------------------------

    def test_admin_isolation_sharing_and_revocation(self):
        self.require_auth()
        tome = self.tome
        name = f"team-{uuid.uuid4().hex[:8]}"
        try:
            tenant = tome.create_tenant(name, max_documents=2)
        except TomeError as e:
            self.skip_if_unimplemented(e)
        self.assertEqual(tenant.name, name)
        self.assertEqual(tenant.quotas.max_documents, 2)
        self.assertIn(tenant.id, [t.id for t in tome.list_tenants()])
        self.assertEqual(tome.get_tenant(tenant.id).name, name)
        tenant = tome.set_quotas(tenant.id, max_tokens_per_minute=10 ** 9)
        self.assertEqual(tenant.quotas.max_documents, 2)  # kept
        self.assertEqual(tenant.quotas.max_tokens_per_minute, 10 ** 9)

        key = tome.create_api_key(tenant.id, "test")
        self.assertTrue(key.secret)
        self.assertIn(key.key_id, [k.key_id for k in tome.list_api_keys(tenant.id)])
        self.assertFalse(any(k.secret for k in tome.list_api_keys(tenant.id)))

        mine = self.ready_document("Private notes of the default tenant.\n" * 3, "private")
        with TomeClient(self.address, api_key=key.secret, timeout=300) as other:
            self.assertNotIn(mine.id, [d.id for d in other.list_documents(include_shared=True)])
            with self.assertRaises(TomeError) as e:
                other.get_document(mine.id)
            self.assertIn(e.exception.code,
                          (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED))

            shared = tome.share_document(mine.id, [tenant.id])
            self.assertEqual(list(shared.shared_with_tenant_ids), [tenant.id])
            self.assertTrue(shared.owned)
            seen = other.get_document(mine.id)
            self.assertFalse(seen.owned)
            self.assertIn(mine.id, [d.id for d in other.list_documents(include_shared=True)])
            self.assertNotIn(mine.id, [d.id for d in other.list_documents()])
            other.answer(mine.id, "Whose notes?", max_tokens=4)
            with self.assertRaises(TomeError) as e:
                other.share_document(mine.id, public=True)
            self.assertEqual(e.exception.code, grpc.StatusCode.PERMISSION_DENIED)
            tome.share_document(mine.id)  # private again
            with self.assertRaises(TomeError):
                other.get_document(mine.id)

            other.create_document("one")
            other.create_document("two")
            with self.assertRaises(TomeError) as e:
                other.create_document("three")
            self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)

            tome.revoke_api_key(key.key_id)
            with self.assertRaises(TomeError) as e:
                other.list_documents()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)

    def test_bad_keys_are_rejected(self):
        self.require_auth()
        with TomeClient(self.address, api_key="not-a-key") as bad:
            with self.assertRaises(TomeError) as e:
                bad.list_documents()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        with TomeClient(self.address, api_key=self.api_key, admin_key="wrong") as bad:
            with self.assertRaises(TomeError) as e:
                bad.list_tenants()
            self.assertIn(e.exception.code, (grpc.StatusCode.UNAUTHENTICATED,
                                             grpc.StatusCode.PERMISSION_DENIED))


if __name__ == "__main__":
    unittest.main()
