"""The benchmark scripts in their smoke mode (seconds, real stack), so that they do not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.mark.parametrize(
    ("script", "header", "timeout"),
    [
        ("search_overhead.py", "vs in-process", 300),
        ("answer_latency.py", "TTFT p50", 300),
        ("grpc_vs_http.py", "gRPC / HTTP", 300),
        ("embedder_tokenize_hop.py", "python hop adds", 300),
        ("profile_gateway.py", "inclusive", 300),
        ("loadtest.py", "loadtest customer:", 300),
        ("capacity.py", "GPUs", 300),
        # The first run builds the previous pipeline (e5 model and index: about 5 minutes on two cores).
        ("search_latency.py", "current / previous p50", 1200),
    ],
)
@pytest.mark.timeout(1500)
def test_benchmark_smoke(script: str, header: str, timeout: int) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert header in result.stdout


@pytest.mark.timeout(600)
def test_resilience_smoke(tmp_path: Path) -> None:
    """Every part of the resilience suite, briefly: its figures print and the service stops cleanly."""
    out = tmp_path / "resilience.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.resilience", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for header in ("## fuzz", "## overload", "## fault", "## slow", "stopped cleanly: True"):
        assert header in result.stdout, header
    assert '"5xx_or_internal": 0' in out.read_text()
