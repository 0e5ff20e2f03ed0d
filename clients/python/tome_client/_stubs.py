"""Generated gRPC stubs of the tome.v1 API, made on first import.

The stubs are generated with Debian's python3-grpc-tools (grpc_tools.protoc) from the
repository's proto/ directory into a cache directory keyed by a hash of the .proto files,
so an API change regenerates them and nothing generated is ever committed.

Environment:
  TOME_PROTO_DIR        where tome/v1/*.proto live (default: <repo>/proto)
  TOME_CLIENT_STUBS_DIR use (and fill, if empty) this directory instead of the cache
"""

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

_MODULES = ("admin", "documents", "query", "sessions")


def proto_dir() -> Path:
    env = os.environ.get("TOME_PROTO_DIR")
    if env:
        return Path(env)
    # clients/python/tome_client/_stubs.py -> <repo>/proto
    return Path(__file__).resolve().parents[3] / "proto"


def _protos(root: Path):
    files = [root / "tome" / "v1" / f"{m}.proto" for m in _MODULES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ImportError(
            "tome_client: cannot find the tome.v1 protos (%s); set TOME_PROTO_DIR"
            % ", ".join(missing))
    return files


def _digest(files) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _cache_dir(digest: str) -> Path:
    env = os.environ.get("TOME_CLIENT_STUBS_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tome_client" / digest[:16]


def generate(out_dir, root=None) -> None:
    """Runs grpc_tools.protoc on the tome.v1 protos, writing Python modules to out_dir."""
    from grpc_tools import protoc  # Debian: python3-grpc-tools

    root = Path(root) if root else proto_dir()
    files = _protos(root)
    wkt = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    includes = [f"-I{root}"] + [f"-I{p}" for p in (wkt, Path("/usr/include")) if p.is_dir()]
    args = ["grpc_tools.protoc", *includes, f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", *map(str, files)]
    if protoc.main(args) != 0:
        raise ImportError("tome_client: grpc_tools.protoc failed on " + str(root))


def _ensure() -> Path:
    digest = _digest(_protos(proto_dir()))
    out = _cache_dir(digest)
    marker = out / ".proto-sha256"
    if marker.is_file() and marker.read_text() == digest:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Generate next to the destination, then move it in: concurrent first imports never see
    # half-written modules.
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        generate(tmp)
        (tmp / ".proto-sha256").write_text(digest)
        try:
            os.rename(tmp, out)  # works when out does not exist yet
        except OSError:
            # out exists: stale stubs (TOME_CLIENT_STUBS_DIR after a proto change) or
            # another process won; overwriting with identical files is harmless.
            shutil.copytree(tmp, out, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load():
    """Returns the generated modules as a namespace: admin_pb2, admin_pb2_grpc, ..."""
    out = str(_ensure())
    if out not in sys.path:
        sys.path.insert(0, out)
    modules = {}
    for m in _MODULES:
        for suffix in ("_pb2", "_pb2_grpc"):
            name = m + suffix
            modules[name] = importlib.import_module(f"tome.v1.{name}")
    return type("TomeV1", (), modules)
