"""Slow clients on /vector: each sends its headers and one byte of a body, then nothing, while a normal client
keeps posting (the slow-loris pattern; a real Vector behind a bad network looks the same)."""

from __future__ import annotations

import socket
from pathlib import Path

from bench.faults.harness import pause
from bench.faults.result import Result
from bench.faults.rows import Env, vector_row


def slow_clients(folder: Path, name: str, clients: int, seconds: float) -> Result:
    def fault(env: Env) -> str:
        held = []
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", env.service.port), timeout=10)
            head = b"POST /vector HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"
            sock.sendall(head)
            held.append(sock)
        pause(seconds)
        closed_by_server = sum(1 for sock in held if _closed(sock))
        for sock in held:
            sock.close()
        load = env.load
        return (
            f"{clients} clients sent headers and 1 body byte, then silence for {seconds:.0f} s "
            f"({closed_by_server} closed by the server meanwhile); the normal client's slowest accepted body took "
            f"{load.longest_accept_s:.1f} s; its answers {dict(sorted(load.answers.items()))}"  # type: ignore[union-attr]
        )

    return vector_row(folder, name, f"{clients} slow clients {seconds:.0f} s", fault)


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
