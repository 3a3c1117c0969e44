"""Python stubs for the gRPC API, generated from ``proto/`` with grpcio-tools (never edited by hand).

The stubs go inside the client package (``clients/albert_client/_proto``, not in git): other
administrations install that package, and the gateway imports the same modules. Message stubs come with
``.pyi`` type stubs. Skipped when the proto files and the grpcio-tools version have not changed.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib.metadata import version
from pathlib import Path

__all__ = ["PROTO_ROOT", "STUBS_DIR", "generate_stubs"]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
CLIENT_ROOT = ROOT / "clients"
STUBS_DIR = CLIENT_ROOT / "albert_client" / "_proto"
_PACKAGE_PREFIX = "albert_client/_proto"


def _fingerprint(protos: list[Path]) -> str:
    digest = hashlib.sha256(version("grpcio-tools").encode())
    for proto in protos:
        digest.update(proto.relative_to(PROTO_ROOT).as_posix().encode())
        digest.update(proto.read_bytes())
    return digest.hexdigest()


def generate_stubs(proto_root: Path = PROTO_ROOT, client_root: Path = CLIENT_ROOT) -> Path:
    """Generate ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` for every proto file; return the stub dir."""
    from grpc_tools import protoc  # a build-time tool

    protos = sorted(proto_root.rglob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files under {proto_root}")
    stubs = client_root / _PACKAGE_PREFIX
    stamp = stubs / ".fingerprint"
    wanted = _fingerprint(protos)
    if stamp.exists() and stamp.read_text() == wanted:
        return stubs
    shutil.rmtree(stubs, ignore_errors=True)
    grpc_include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{_PACKAGE_PREFIX}={proto_root}",
        f"-I{grpc_include}",
        f"--python_out={client_root}",
        f"--pyi_out={client_root}",
        f"--grpc_python_out={client_root}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")
    for directory in [stubs, *(d for d in stubs.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    stamp.write_text(wanted)
    return stubs
