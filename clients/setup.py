"""Generates the gRPC stubs from ../proto before packaging (the stubs are not in git)."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self) -> None:
        sys.path.insert(0, str(HERE.parent))
        from build_engines.protos import generate_stubs  # stdlib + grpc_tools only

        generate_stubs(HERE.parent / "proto", HERE)
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
