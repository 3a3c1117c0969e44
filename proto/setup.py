"""Generates the stubs of ``albert/v1/*.proto`` into ``albert_proto/`` before the package is built (they are not
in git). The protos register as ``albert_proto/v1/<name>.proto``: one package, imported by both the gateway and
the client, so a process that loads both registers each message once."""

from __future__ import annotations

import hashlib
import shutil
from importlib.metadata import version
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "albert"
STUBS = HERE / "albert_proto" / "v1"


def _fingerprint(protos: list[Path]) -> str:
    digest = hashlib.sha256(version("grpcio-tools").encode())
    for proto in protos:
        digest.update(proto.relative_to(PROTOS).as_posix().encode())
        digest.update(proto.read_bytes())
    return digest.hexdigest()


def generate_stubs() -> None:
    """``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` for every proto file; skipped when neither the protos
    nor the grpcio-tools version changed."""
    from grpc_tools import protoc

    protos = sorted(PROTOS.rglob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files under {PROTOS}")
    stamp = STUBS / ".fingerprint"
    wanted = _fingerprint(protos)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    shutil.rmtree(STUBS, ignore_errors=True)
    grpc_include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-Ialbert_proto={PROTOS}",
        f"-I{grpc_include}",
        f"--python_out={HERE}",
        f"--pyi_out={HERE}",
        f"--grpc_python_out={HERE}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")
    for directory in [STUBS, *(d for d in STUBS.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    stamp.write_text(wanted)


class BuildWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
