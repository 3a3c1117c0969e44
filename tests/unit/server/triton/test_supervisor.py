"""The supervisor's rules with a stand-in for tritonserver (a real child process that sleeps): restart after a
death, give up after the bounded tries, stop for good; and the port check. The real tritonserver killed under
load: tests/integration/test_supervision.py."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.triton.process import free_port
from server.triton.supervisor import PortTaken, Supervisor, check_ports_free


class StandIn:
    """What the supervisor uses of ``TritonProcess``: start, wait_ready, stop, process, log."""

    def __init__(self, log: Path, *, fail_from_start: int | None = None) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.fail_from_start = fail_from_start  # this start and the later ones die at once

    def start(self) -> StandIn:
        self.starts += 1
        dies = self.fail_from_start is not None and self.starts >= self.fail_from_start
        code = "import sys; print('cannot bind'); sys.exit(3)" if dies else "import time; time.sleep(60)"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 10.0) -> StandIn:
        if self.process is None:
            raise RuntimeError("stopped")
        try:
            code = self.process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            return self
        raise RuntimeError(f"tritonserver exited with code {code}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_dead_tritonserver_is_started_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    triton = StandIn(tmp_path / "triton.log")
    supervisor = Supervisor(triton, restarts=3, poll_s=0.05, backoff_s=0.05)  # type: ignore[arg-type]
    supervisor.start()
    try:
        first = triton.process
        assert first is not None
        first.send_signal(signal.SIGKILL)
        _until(lambda: supervisor.restarted == 1)
        assert triton.process is not None and triton.process.pid != first.pid and triton.process.poll() is None
        assert "tritonserver exited with status -9" in caplog.text
    finally:
        supervisor.stop()
    assert triton.process is None and not supervisor.gave_up


def test_it_gives_up_after_the_bounded_tries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    triton = StandIn(tmp_path / "triton.log", fail_from_start=2)
    gave_up: list[bool] = []
    supervisor = Supervisor(
        triton,  # type: ignore[arg-type]
        restarts=3,
        poll_s=0.05,
        backoff_s=0.05,
        on_give_up=lambda: gave_up.append(True),
    )
    supervisor.start()
    try:
        assert triton.process is not None
        triton.process.kill()
        _until(lambda: gave_up == [True])
        assert supervisor.gave_up and triton.starts == 1 + 3
        assert "could not be brought back after 3 tries" in caplog.text
        assert "cannot bind" in caplog.text  # the end of its log says why
    finally:
        supervisor.stop()


def test_stop_ends_the_watch_for_good(tmp_path: Path) -> None:
    triton = StandIn(tmp_path / "triton.log")
    supervisor = Supervisor(triton, restarts=3, poll_s=0.05, backoff_s=0.05)  # type: ignore[arg-type]
    supervisor.start()
    supervisor.stop()
    time.sleep(0.3)
    assert triton.process is None and triton.starts == 1


def test_a_port_in_use_is_named_with_what_to_do() -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortTaken, match=f"port {port} \\(Triton gRPC\\) on 127.0.0.1 is already in use"):
            check_ports_free({"Triton HTTP": free_port(), "Triton gRPC": port})
    check_ports_free({"Triton gRPC": port})  # free again


def test_free_ports_lie_outside_the_ephemeral_range_and_are_not_given_twice() -> None:
    """An outgoing connection can be given an ephemeral port between the choice and the server's bind."""
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(not low <= port <= high for port in ports)


def test_the_gateway_alone_names_a_taken_port_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m server gateway`` checks its own ports as ``serve`` does (a gRPC bind failure was exit 3 with a
    traceback)."""
    from server.__main__ import main
    from tests.support.paths import GOLDEN

    monkeypatch.setenv("ALBERT_MODEL_INTERFACE", str(GOLDEN / "cpu" / "albert_interface.json"))
    port = free_port()
    monkeypatch.setenv("ALBERT_HTTP_PORT", str(free_port()))
    monkeypatch.setenv("ALBERT_GRPC_PORT", str(port))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert main(["gateway"]) == 2
    assert f"port {port} (the gateway's gRPC API) on 127.0.0.1 is already in use" in capsys.readouterr().err
