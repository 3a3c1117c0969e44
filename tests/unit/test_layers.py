"""The layering of the code, read from its import statements: front ends → domain → Triton clients, the
process's wiring in one module, the build ↔ serve contract depending on nothing of ours."""

from __future__ import annotations

import ast

import pytest

from tests.support.paths import ROOT

OURS = (
    "config",
    "server",
    "corpus",
    "build_engines",
    "contract",
    "inference",
    "harness",
    "benchmarks",
    "tests",
    "clients",
)


def _imports(package: str) -> dict[str, set[str]]:
    """Module name -> the modules of this repository it imports (at any depth of the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[module] = {n for n in names if n.split(".")[0] in (*OURS, "albert_client", "albert_proto")}
    assert found, f"no modules under {package}"
    return found


def _offenders(package: str, forbidden: tuple[str, ...], *, within: str = "") -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in _imports(package).items()
        if module.startswith(within)
        for name in names
        if name.startswith(forbidden)
    )


def test_the_product_never_imports_the_test_and_benchmark_launchers() -> None:
    for package in ("config", "server", "corpus", "build_engines", "contract", "inference"):
        assert _offenders(package, ("harness", "tests", "benchmarks")) == []


def test_the_gateway_and_the_client_share_the_api_stubs_not_each_other() -> None:
    assert _offenders("server", ("albert_client",)) == []
    assert _offenders("clients", ("server", "corpus", "build_engines", "contract", "harness")) == []
    for package in ("server", "clients"):
        assert any(n.startswith("albert_proto.v1") for names in _imports(package).values() for n in names), package


def test_the_build_serve_contract_depends_on_nothing_of_ours() -> None:
    assert _offenders("contract", OURS) == []


def test_the_domain_knows_neither_the_front_ends_nor_the_wiring_nor_triton() -> None:
    front_and_wiring = ("server.http", "server.rpc", "server.runtime", "server.triton", "server.__main__")
    assert _offenders("server", front_and_wiring, within="server.search") == []
    assert _offenders("server", front_and_wiring, within="server.answers") == []


def test_the_triton_clients_know_neither_the_front_ends_nor_the_wiring() -> None:
    assert _offenders("server", ("server.http", "server.rpc", "server.runtime"), within="server.triton") == []


@pytest.mark.parametrize("front_end", ["server.http", "server.rpc"])
def test_only_the_wiring_and_the_launcher_import_a_front_end(front_end: str) -> None:
    importers = {
        module
        for module, names in _imports("server").items()
        if not module.startswith(front_end) and any(n.startswith(front_end) for n in names)
    }
    assert importers <= {"server.runtime", "server.__main__"}


def test_ingestion_and_the_builds_never_import_the_gateway() -> None:
    for package in ("corpus", "build_engines"):
        assert _offenders(package, ("server",)) == []


def test_the_settings_import_nothing_of_ours() -> None:
    assert _offenders("config", tuple(package for package in OURS if package != "config")) == []
