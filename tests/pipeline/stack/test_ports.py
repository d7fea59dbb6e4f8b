"""Free loopback ports: distinct, bindable, and a listening port is not free."""

from __future__ import annotations

import socket

from pipeline.stack.ports import HOST, free_port, free_ports, port_is_free


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as sock:
            sock.bind((HOST, port))  # raises if something holds it


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not port_is_free(taken)
    assert port_is_free(free_port())
