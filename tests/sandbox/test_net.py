import os
import socket

import pytest

from sandbox.net import (
    LOOPBACK,
    PORT_RANGE,
    PortTimeout,
    free_port,
    listening_sockets,
    wait_for_port,
    wait_listening,
)


def test_free_port_is_in_range_and_bindable() -> None:
    ports = {free_port() for _ in range(20)}
    assert all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for p in ports)
    assert len(ports) > 1  # random, not a fixed port that every server would fight over
    with socket.socket() as sock:
        sock.bind((LOOPBACK, ports.pop()))


def test_wait_for_port_sees_a_listener_and_its_closing() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        port = sock.getsockname()[1]
        wait_for_port(LOOPBACK, port, timeout=10)
        wait_listening(os.getpid(), LOOPBACK, port, timeout=10, alive=lambda: True)
        assert (LOOPBACK, port) in listening_sockets(os.getpid())
    assert (LOOPBACK, port) not in listening_sockets(os.getpid())


def test_wait_for_port_gives_up() -> None:
    port = free_port()
    with pytest.raises(PortTimeout, match=str(port)):
        wait_for_port(LOOPBACK, port, timeout=0.2)


def test_wait_for_port_stops_when_the_process_died() -> None:
    with pytest.raises(PortTimeout, match="exited"):
        wait_for_port(LOOPBACK, free_port(), timeout=600, alive=lambda: False)


def test_wait_listening_ignores_other_processes_on_the_port() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortTimeout, match="did not listen"):
            wait_listening(os.getppid(), LOOPBACK, port, timeout=0.2, alive=lambda: True)
