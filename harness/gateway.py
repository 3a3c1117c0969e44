"""The gateway as a child process (``python -m server gateway``), for tests and benchmarks; ``local_stack``
runs tritonserver and the gateway together on free loopback ports; ``ServeProcess`` runs the embedded
default as a service manager would (``python -m server serve``: supervised tritonserver and gateway)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from config.settings import Settings
from server.triton.process import TritonPorts, TritonProcess, free_port

__all__ = ["GatewayProcess", "ServeProcess", "local_stack", "pids_with"]

_ROOT = Path(__file__).resolve().parent.parent


class GatewayProcess:
    """Started on a free loopback port, configured through ALBERT_* variables (extra ones via ``env``)."""

    def __init__(self, settings: Settings, triton_grpc_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        variables = {
            "ALBERT_CACHE_DIR": str(settings.cache_dir),
            "ALBERT_HTTP_PORT": str(self.port),
            "ALBERT_GRPC_PORT": str(self.grpc_port),
            "ALBERT_TRITON_GRPC_URL": triton_grpc_url,
            **env,
        }
        if settings.index_dir is not None:
            variables.setdefault("ALBERT_INDEX_DIR", str(settings.index_dir))
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "gateway"],
            cwd=_ROOT,
            env={**os.environ, **variables},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_live(self, timeout: float = 60.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.flush()
                tail = Path(self._log.name).read_text(errors="replace")[-1500:]
                raise RuntimeError(f"gateway exited with {self.process.returncode} ({self._log.name}):\n{tail}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("gateway did not come up")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


@contextmanager
def local_stack(
    settings: Settings, work: Path, repository: Path | None = None, **env: str
) -> Iterator[tuple[TritonProcess, GatewayProcess]]:
    """tritonserver (the rendered repository, or ``repository``) and a gateway in front of it, logs in
    ``work``."""
    if repository is not None:
        env.setdefault("ALBERT_MODEL_INTERFACE", str(repository / "albert_interface.json"))
    served = repository or settings.repository_dir
    with TritonProcess(served, work / "triton", TritonPorts.free(), log=work / "triton.log") as triton:
        gateway = GatewayProcess(settings, triton.grpc_url, work / "gateway.log", **env)
        try:
            yield triton, gateway.wait_live()
        finally:
            gateway.stop()


def pids_with(argument: str) -> list[int]:
    """The processes whose command line holds ``argument`` (e.g. ``--grpc-port=8001``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class ServeProcess:
    """``python -m server serve`` on free loopback ports (or those of ``same_ports_as``: a restart), its output
    in ``log``; ``env``: more ALBERT_* values."""

    def __init__(self, log: Path, *, same_ports_as: ServeProcess | None = None, **env: str) -> None:
        if same_ports_as is None:
            self.ports = TritonPorts.free()
            self.http_port, self.grpc_port = free_port(), free_port()
        else:
            self.ports, self.http_port = same_ports_as.ports, same_ports_as.http_port
            self.grpc_port = same_ports_as.grpc_port
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        variables = {
            "ALBERT_HTTP_PORT": str(self.http_port),
            "ALBERT_GRPC_PORT": str(self.grpc_port),
            "ALBERT_TRITON_GRPC_URL": f"127.0.0.1:{self.ports.grpc}",
            "ALBERT_TRITON_HTTP_PORT": str(self.ports.http),
            "ALBERT_TRITON_METRICS_PORT": str(self.ports.metrics),
            **env,
        }
        self.log = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            cwd=_ROOT,
            env={**os.environ, **variables},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 240.0) -> float:
        """Seconds until /health/ready answered 200; raises when the process exits or time runs out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.output()[-2000:]}")
            if self.is_ready():
                return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"serve not ready after {timeout:.0f} s")

    def triton_pids(self) -> list[int]:
        return pids_with(f"--grpc-port={self.ports.grpc}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit status (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.triton_pids():  # never leave one behind, whatever the test found
            os.kill(pid, signal.SIGKILL)
        self._log.close()
        return self.process.returncode
