"""Connection slots under attack: clients that close at once, one address taking every slot, a trickling DATA.

Issue 14, findings 1, 2 and 7. Each test reproduces the attack (bounded, loopback) and
fails on the behaviour before the fix: a slot held until ``intake.timeout``, no limit per
address, a DATA phase that never ends while bytes keep coming.
"""

from __future__ import annotations

import socket
import time

from tests.core.helpers import RawClient
from tests.peers.net import wait_until

from .conftest import GatewayFactory, greeting, server_sockets, timed


def test_clients_closing_before_the_greeting_give_their_slot_back_at_once(intake_gateway: GatewayFactory) -> None:
    """60 connect-and-close and 20 half-closing clients against 20 slots: a real client is greeted within 10 s.

    Before: each kept its slot until ``intake.timeout`` (here 60 s) in CLOSE-WAIT, and every
    other client got ``421 Too many connections`` meanwhile.
    """
    gw = intake_gateway({"max_connections": 20, "max_connections_per_client": 20, "timeout": "60s"})
    host, port = gw.address
    for _ in range(60):  # connect and close at once, before the greeting is read
        socket.create_connection((host, port), timeout=5).close()
    half_closed = []
    for _ in range(20):  # connect and close only the sending side (shutdown SHUT_WR)
        s = socket.create_connection((host, port), timeout=5)
        s.shutdown(socket.SHUT_WR)
        half_closed.append(s)
    waited, _ = timed(lambda: wait_until(lambda: greeting(host, port).startswith(b"220"), 10,
                                         "a free slot after the connect-and-close burst", gw.log_text))
    for s in half_closed:  # the server has closed its side: each reads to the end (bounded by its timeout)
        s.settimeout(10)
        for _ in range(10):
            if not s.recv(4096):
                break
        else:
            raise AssertionError("the server kept a half-closed connection open")
        s.close()
    wait_until(lambda: server_sockets(port, "close-wait") == 0, 10, "no server socket left in CLOSE-WAIT")
    print(f"\nfinding 1: after 60 connect-and-close + 20 half-close clients (20 slots, timeout 60s), "
          f"a new client was greeted after {waited:.2f}s; CLOSE-WAIT sockets: 0")


def test_one_address_cannot_take_every_slot(intake_gateway: GatewayFactory) -> None:
    """``max_connections_per_client: 3`` of 20: the 4th connection from 127.0.0.1 gets 421, 127.0.0.2 is greeted."""
    gw = intake_gateway({"max_connections": 20, "max_connections_per_client": 3})
    host, port = gw.address
    held = [RawClient(host, port) for _ in range(3)]
    assert all(c.greeting[0] == 220 for c in held)
    fourth = greeting(host, port)
    assert fourth.startswith(b"421 4.7.0") and b"Too many connections from 127.0.0.1" in fourth, fourth
    assert greeting(host, port, source="127.0.0.2").startswith(b"220")
    for c in held:
        c.close()
    wait_until(lambda: greeting(host, port).startswith(b"220"), 10, "127.0.0.1 greeted again once its clients left")
    print(f"\nfinding 2: 3 connections from 127.0.0.1, the 4th answered {fourth.decode().strip()!r}; "
          "127.0.0.2 greeted")


def test_a_trickling_data_phase_is_cut_after_data_timeout(intake_gateway: GatewayFactory) -> None:
    """A byte every 0.4 s (idle timeout 2 s never fires) is answered ``421 4.4.2`` after ``data_timeout`` 3 s.

    Before: the idle timer restarted on every chunk, so the session lasted as long as the client liked.
    """
    gw = intake_gateway({"timeout": "2s", "data_timeout": "3s"})
    host, port = gw.address
    c = RawClient(host, port)
    c.cmd("EHLO slow.test")
    assert c.cmd("MAIL FROM:<slow@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<victim@example.net>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.sock.settimeout(0.4)
    started = time.monotonic()
    answer = b""
    for _ in range(40):  # bounded: at most 40 bytes over about 16 s
        try:
            c.sock.sendall(b"x")
            chunk = c.sock.recv(4096)  # waits 0.4 s: the pace of the slow client
        except TimeoutError:
            continue
        except OSError:
            break
        answer += chunk
        if not chunk or b"\r\n" in answer:
            break
    elapsed = time.monotonic() - started
    c.close()
    assert answer.startswith(b"421 4.4.2"), (answer, elapsed)
    assert elapsed < 10, elapsed
    wait_until(lambda: "not finished within 3s" in gw.log_text(), 10, "the DATA timeout in the log")
    print(f"\nfinding 7: a byte every 0.4s in DATA was answered {answer.decode().strip()!r} after {elapsed:.1f}s")
