"""Meters that answer from a recording: an EtherNet/IP stand-in cheap enough for a 100-meter fleet run.

The cpppo simulator burns ~13 ms of CPU per Multiple Service Packet (its byte-by-byte parser), so 100
of its meters at 1 Hz take 1.3 of this machine's 2 cores: a fleet benchmark then measures the
collector's threads waiting for CPU behind the simulators, not the collector. Here the cpppo simulator
answers each distinct request ONCE, through a recording relay (`record`); then one process
(`python -m bench.replay_meters`) serves any number of ports from one selector loop, answering each
request with the reply cpppo gave to it. The collector's real driver and Poller make a real TCP round
trip and decode real cpppo bytes, for ~25 us of server CPU per request (measured: 23 us).

What it cannot do: values are those of one frozen poll, there are no faults, and a request the
recording does not hold closes the connection. Requests are matched with their session handle and
sender context zeroed (they differ per connection; pycomm3 checks neither in replies).

When every port listens it prints ONE JSON line, `{"meters": [{"port": 40001}, ...]}`, like the
simulator; `ReplayMeters` starts it as a child process and waits for that line.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from collector.assembly_reader import AssemblyReader
from collector.meter import PycommDriver
from collector.registers import register_map
from collector.simulator.process import SimulatorProcess, terminate

HOST = "127.0.0.1"
HEADER = 24  # EtherNet/IP encapsulation header; its bytes 2..3 are the length of what follows
UNREGISTER_SESSION = 0x66  # the one command that gets no reply
_START_TIMEOUT_S = 30.0  # the child binds its ports and prints them at once; waiting longer means it hung


def request_key(frame: bytes) -> bytes:
    """The frame with its session handle (bytes 4..7) and sender context (12..19) zeroed."""
    return frame[:4] + bytes(4) + frame[8:12] + bytes(8) + frame[20:]


def read_frame(sock: socket.socket) -> bytes:
    """One whole encapsulation frame from a blocking socket; b"" when the peer closed."""
    data = b""
    while len(data) < HEADER or len(data) < HEADER + struct.unpack_from("<H", data, 2)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def record(recording: Path) -> None:
    """Poll one frozen cpppo-simulated meter once through a relay; save each request's reply (hex)."""
    replies: dict[str, str] = {}
    with SimulatorProcess(meters=1) as sim, socket.create_server((HOST, 0)) as relay:
        sim.control.freeze(0)

        def serve() -> None:
            client, _ = relay.accept()
            with client, socket.create_connection((HOST, sim.ports[0])) as meter:
                while frame := read_frame(client):
                    meter.sendall(frame)
                    if frame[0] == UNREGISTER_SESSION:
                        return
                    reply = read_frame(meter)
                    replies[request_key(frame).hex()] = reply.hex()
                    client.sendall(reply)

        relaying = threading.Thread(target=serve, daemon=True)
        relaying.start()
        driver = PycommDriver(HOST, relay.getsockname()[1], timeout_s=5.0)
        try:
            reader = AssemblyReader(driver, register_map(), "recording")
            reader.check_sizes()  # the size check (the Multiple Service probe) and a poll: all a
            reader.read_data()  # connection of the Poller sends
        finally:
            driver.close()
        relaying.join(10)
    recording.write_text(json.dumps(replies, indent=1))


class _Connection:
    __slots__ = ("pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.pending = sock, b""


def serve(recording: Path, meters: int) -> None:
    """Listen on `meters` ports and answer from `recording` until SIGTERM/SIGINT."""
    replies = {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.loads(recording.read_text()).items()}
    selector = selectors.DefaultSelector()
    listeners = [socket.create_server((HOST, 0)) for _ in range(meters)]
    for listener in listeners:
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, None)
    stop_r, stop_w = os.pipe()
    selector.register(stop_r, selectors.EVENT_READ, "stop")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os.write(stop_w, b"x"))
    print(json.dumps({"meters": [{"port": s.getsockname()[1]} for s in listeners]}), flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "stop":
                return
            if key.data is None:  # a listener: a new connection
                sock, _ = key.fileobj.accept()  # type: ignore[union-attr]
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(sock, selectors.EVENT_READ, _Connection(sock))
                continue
            conn: _Connection = key.data
            if not _answer(conn, replies):
                selector.unregister(conn.sock)
                conn.sock.close()


def _answer(conn: _Connection, replies: dict[bytes, bytes]) -> bool:
    """Answer every whole frame received; False when the connection is to be closed."""
    try:
        chunk = conn.sock.recv(65536)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if not chunk:
        return False
    conn.pending += chunk
    while len(conn.pending) >= HEADER:
        end = HEADER + struct.unpack_from("<H", conn.pending, 2)[0]
        if len(conn.pending) < end:
            break
        frame, conn.pending = conn.pending[:end], conn.pending[end:]
        reply = replies.get(request_key(frame))
        if frame[0] == UNREGISTER_SESSION or reply is None:
            return False
        conn.sock.sendall(reply)  # a few hundred bytes to a loopback socket: never blocks for long
    return True


class ReplayMeters:
    """`with ReplayMeters(recording, meters=100) as replay: replay.ports` (a child process)."""

    def __init__(self, recording: Path, meters: int) -> None:
        self.recording, self.meters = recording, meters
        self.ports: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReplayMeters:
        cmd = [sys.executable, "-m", "bench.replay_meters", "serve", str(self.recording), str(self.meters)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        started, _, _ = select.select([self._proc.stdout], [], [], _START_TIMEOUT_S)
        line = self._proc.stdout.readline() if started else b""  # the child writes one whole line
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError(f"replay meters did not print their ports within {_START_TIMEOUT_S:g} s")
        self.ports = [m["port"] for m in json.loads(line)["meters"]]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay_meters", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record the cpppo simulator's replies to one connection's requests")
    rec.add_argument("recording", type=Path)
    srv = sub.add_parser("serve", help="serve METERS ports from a recording")
    srv.add_argument("recording", type=Path)
    srv.add_argument("meters", type=int)
    args = parser.parse_args()
    if args.command == "record":
        record(args.recording)
    else:
        serve(args.recording, args.meters)


if __name__ == "__main__":
    main()
