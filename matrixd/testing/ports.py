"""Loopback ports for test and benchmark processes to listen on.

Asking the kernel for port 0 and closing the socket is not enough: Linux may
hand the same port to the very next ``bind(("127.0.0.1", 0))`` (a closed,
never-connected socket leaves nothing behind), so two listeners of one server
could be given one port. It also hands ephemeral ports to every outgoing
connection, which may take a port between the probe and the server's bind.

So ports come from below the kernel's ephemeral range, a process never hands
out a port twice, and each is checked bindable before it is returned. Each
process picks at random, so the workers of a parallel test run rarely even try
the same port.
"""

from __future__ import annotations

import random
import socket
import threading

# Below Linux's default ephemeral range (32768-60999), above the registered
# services most machines run.
LOW = 20000
HIGH = 32767

_lock = threading.Lock()
_handed_out: set[int] = set()
_rng = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that nothing listens on and this process has not handed out before."""
    ports: list[int] = []
    with _lock:
        for _ in range((HIGH - LOW) * 2):
            if len(ports) == n:
                return ports
            port = _rng.randint(LOW, HIGH)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free loopback ports left in {LOW}-{HIGH}")


def free_port() -> int:
    """One loopback port, as :func:`free_ports`."""
    return free_ports(1)[0]
