"""Port helpers: every sandbox server binds 127.0.0.1 on a free port below 32768.

Ports are picked at random in 20000..32767 (below Linux's default ephemeral range, 32768..60999, so
an outgoing connection can never be handed the port between our test-bind and the server's bind)
and test-bound before being returned.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"
PORT_RANGE = (20000, 32767)
_ATTEMPTS = 200


class PortTimeout(TimeoutError):
    """A server did not start accepting connections in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 in 20000..32767 that nothing listens on right now."""
    for _ in range(_ATTEMPTS):
        port = random.randint(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free TCP port on {LOOPBACK} in {PORT_RANGE[0]}..{PORT_RANGE[1]}")


def port_accepts(host: str, port: int) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float = 15.0, alive: Callable[[], bool] | None = None
) -> None:
    """Block until host:port accepts TCP connections; raise `PortTimeout` after `timeout` seconds.

    `alive`, if given, is polled too: when it returns False (the server process died) waiting stops at
    once with `PortTimeout` instead of running out the clock.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_accepts(host, port):
            return
        if alive is not None and not alive():
            raise PortTimeout(f"the process meant to listen on {host}:{port} exited")
        if time.monotonic() >= deadline:
            raise PortTimeout(f"nothing accepted connections on {host}:{port} within {timeout:g}s")
        time.sleep(0.05)


def wait_listening(pid: int, host: str, port: int, timeout: float, alive: Callable[[], bool]) -> None:
    """Block until process `pid` itself listens on host:port.

    Stronger than `wait_for_port`: a port probe would also succeed if some other process holds the
    port (our server then fails to bind and exits), and it leaves a failed-handshake line in TLS
    servers' logs. Raises `PortTimeout` when `alive()` turns False or after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while (host, port) not in listening_sockets(pid):
        if not alive():
            raise PortTimeout(f"the process meant to listen on {host}:{port} exited")
        if time.monotonic() >= deadline:
            raise PortTimeout(f"process {pid} did not listen on {host}:{port} within {timeout:g}s")
        time.sleep(0.05)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on (Linux /proc), IPv4 and IPv6.

    Lets tests prove a server binds 127.0.0.1 only (an all-interfaces bind shows as 0.0.0.0 or ::).
    """
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:  # the process is gone
        return []
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table, v6 in ((f"/proc/{pid}/net/tcp", False), (f"/proc/{pid}/net/tcp6", True)):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            next(fh)  # header
            for line in fh:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != _TCP_LISTEN or inode not in inodes:
                    continue
                addr_hex, port_hex = local.split(":")
                found.append((_decode_addr(addr_hex, v6), int(port_hex, 16)))
    return found


_TCP_LISTEN = "0A"


def _decode_addr(addr_hex: str, v6: bool) -> str:
    if not v6:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
    # /proc prints IPv6 as four host-order 32-bit words.
    raw = b"".join(bytes.fromhex(addr_hex[i : i + 8])[::-1] for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)
