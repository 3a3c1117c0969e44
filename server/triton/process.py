"""Running the real ``tritonserver`` binary shipped in the nvidia-pytriton wheel, without Docker.

The wheel carries the server, the python backend and one backend stub per Python version. The stub must
sit next to the backend, it links the wheel's bundled libraries, and it runs the ``python3`` found first
on PATH, so the server is started with this interpreter's environment first on PATH.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["TritonPorts", "TritonProcess", "free_port", "prepare_backends"]


def _wheel_root() -> Path:
    import pytriton  # the wheel's import name; only its files are used

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


_given_ports: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default where it cannot be read)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port() -> int:
    """A loopback port nothing listens on, for a server started next (tests, benchmarks, local stacks).

    Taken outside the kernel's ephemeral range: a port from the ephemeral range (what binding port 0 gives)
    can be handed to an outgoing connection between this choice and the server's bind, and the server then
    fails to start (the likely cause of a gateway that exited with 3 at start-up once in CI: a gRPC port that
    cannot be bound gives exactly that). Ports already given by this process are not given again."""
    low, high = _ephemeral_range()
    candidates: list[int] = [*range(20000, min(low, 32768)), *range(high + 1, 65536)] or [*range(1024, low)]
    random.shuffle(candidates)
    for port in candidates:
        if port in _given_ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free loopback port outside the ephemeral range")


@dataclass(frozen=True, slots=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(free_port(), free_port(), free_port())


def prepare_backends(work_dir: Path) -> Path:
    """A backend directory holding the python backend and the stub for the running interpreter."""
    source = _wheel_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton ships no python backend stub for Python {version}")
    target = work_dir / "backends" / "python"
    if not (target / stub.name).exists():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source / "backends" / "python", target, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, target / stub.name)
    for exe in (target / stub.name, source / "bin" / "tritonserver"):
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target.parent


class TritonProcess:
    """One tritonserver process on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        repository: Path,
        work_dir: Path,
        ports: TritonPorts,
        *,
        explicit_models: list[str] | None = None,
        log: IO[bytes] | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.repository = repository
        self.work_dir = work_dir
        self.ports = ports
        self.explicit_models = explicit_models
        self.log = log
        self.verbose = verbose
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def command(self) -> list[str]:
        backends = prepare_backends(self.work_dir)
        cmd = [
            str(_wheel_root() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={self.work_dir / 'caches'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.ports.http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.ports.grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.ports.metrics}",
            "--exit-timeout-secs=5",
            f"--log-verbose={1 if self.verbose else 0}",
        ]
        if self.explicit_models is not None:
            cmd.append("--model-control-mode=explicit")
            cmd.extend(f"--load-model={name}" for name in self.explicit_models)
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = _wheel_root().parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH", "")]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self) -> TritonProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.log, Path):
            self._log_handle = self.log.open("ab")
            out: IO[bytes] | int = self._log_handle
        else:
            out = self.log if self.log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> TritonProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None:
                raise RuntimeError("tritonserver was stopped before it was ready")
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode} (see its log)")
            if self.is_ready():
                return self
            time.sleep(0.25)
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole process group (server and backend stubs), then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
            except ProcessLookupError:
                pass
        elif process is not None:
            # The server died on its own (killed, crashed): its backend stubs may outlive it in the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> TritonProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
