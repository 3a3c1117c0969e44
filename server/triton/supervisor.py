"""The embedded default's tritonserver, kept alive beside the gateway (``python -m server serve``).

- Before starting, the ports it will bind must be free: a tritonserver left over from an earlier start would
  otherwise answer the readiness probes, and the gateway would serve its (possibly older) models.
- A watcher thread polls the process. When it dies, the supervisor logs its exit status and the end of its
  log, starts it again after a backoff (1, 2, 4... s, at most 30) and waits for its models; the gateway's
  readiness follows on its own (its Triton channel retries the connection at least every 2 s). While it is
  down, requests get 503 with ``Retry-After`` and streamed answers in flight end with an error event.
- After ``restarts`` failed tries in a row (a start that dies or never becomes ready counts; 5 minutes of
  good health reset the count) it gives up and calls ``on_give_up``: the process then exits with an error and
  an outer supervisor (systemd, Kubernetes) takes over.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from server.triton.process import TritonProcess

__all__ = ["PortTaken", "Supervisor", "check_ports_free"]

log = logging.getLogger("albert.supervisor")

HEALTHY_RESET_S = 300.0
MAX_BACKOFF_S = 30.0


class PortTaken(RuntimeError):
    pass


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise ``PortTaken`` naming the first port of ``ports`` ({what: port}) that something already listens on."""
    for what, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket's TIME_WAIT is no owner
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise PortTaken(
                    f"port {port} ({what}) on {host} is already in use ({exc.strerror}): another process holds it, "
                    "perhaps a tritonserver or gateway left from an earlier start. Stop it (`ss -ltnp | grep "
                    f":{port}` shows which) or choose other ports (ALBERT_TRITON_HTTP_PORT, ALBERT_TRITON_GRPC_URL, "
                    "ALBERT_TRITON_METRICS_PORT, ALBERT_HTTP_PORT, ALBERT_GRPC_PORT)"
                ) from exc


def _log_tail(path: Path | None, lines: int = 5) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - 4096, 0))
            tail = handle.read().decode("utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail if line.strip())


class Supervisor:
    def __init__(
        self,
        triton: TritonProcess,
        *,
        restarts: int,
        ready_timeout_s: float = 180.0,
        poll_s: float = 0.5,
        backoff_s: float = 1.0,
        on_give_up: Callable[[], None] = lambda: None,
    ) -> None:
        self.triton = triton
        self.restarts = restarts
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.on_give_up = on_give_up
        self.restarted = 0  # restarts that brought it back, over the process's life
        self.gave_up = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def log_path(self) -> Path | None:
        return self.triton.log if isinstance(self.triton.log, Path) else None

    def start(self) -> None:
        """Start tritonserver and wait for its models (raises when it exits or is not ready in time), then
        watch it."""
        self.triton.start()
        self.triton.wait_ready(timeout=self.ready_timeout_s)
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        failures, healthy_since = 0, time.monotonic()
        while not self._stopping.wait(self.poll_s):
            process = self.triton.process
            if process is None or process.poll() is None:
                if failures and time.monotonic() - healthy_since > HEALTHY_RESET_S:
                    failures = 0
                continue
            tail = _log_tail(self.log_path)
            log.error(
                "tritonserver exited with status %s%s", process.returncode, f"; its log ends: {tail}" if tail else ""
            )
            while not self._stopping.is_set():
                if failures >= self.restarts:
                    log.error("tritonserver could not be brought back after %d tries: stopping", failures)
                    self.gave_up = True
                    self.on_give_up()
                    return
                backoff = min(self.backoff_s * 2.0**failures, MAX_BACKOFF_S)
                failures += 1
                log.warning("restarting tritonserver in %.3g s (try %d of %d)", backoff, failures, self.restarts)
                if self._stopping.wait(backoff):
                    return
                try:
                    self.triton.stop()  # reaps the dead process and closes its log handle
                    self.triton.start()
                    self.triton.wait_ready(timeout=self.ready_timeout_s)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    tail = _log_tail(self.log_path)
                    log.error("tritonserver restart failed: %s%s", exc, f"; its log ends: {tail}" if tail else "")
                    continue
                self.restarted += 1
                healthy_since = time.monotonic()
                log.info("tritonserver is ready again (restart %d); the gateway follows on its own", self.restarted)
                break

    def stop(self) -> None:
        self._stopping.set()
        self.triton.stop()  # a restart waiting for readiness sees it stopped and gives up at once
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.triton.stop()  # in case the watcher started one just before it saw the stop
