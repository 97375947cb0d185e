"""iSER in the guest without RDMA hardware: Soft-RoCE (the kernel's rdma_rxe) on a dummy
device, whose own address then carries RDMA connections to itself (rxe's loopback).
LIO serves iSER on a portal of that address (``LioTarget.create(..., iser=True)``:
ib_isert); the initiators use ib_iser.  Runs INSIDE the VM as root."""

from __future__ import annotations

import subprocess

ADDRESS = "10.77.0.1"
NETDEV, RDMA_DEV = "iser0", "rxe0"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def rdma_up() -> None:
    """The dummy device with :data:`ADDRESS`, up, and the rxe device on it; ib_isert and
    ib_iser loaded.  Undone by :func:`rdma_down`."""
    for module in ("rdma_rxe", "dummy", "ib_isert", "ib_iser"):
        _run("modprobe", module)
    _run("ip", "link", "add", NETDEV, "type", "dummy")
    _run("ip", "addr", "add", f"{ADDRESS}/24", "dev", NETDEV)
    _run("ip", "link", "set", NETDEV, "up")
    _run("rdma", "link", "add", RDMA_DEV, "type", "rxe", "netdev", NETDEV)


def rdma_down() -> None:
    subprocess.run(["rdma", "link", "delete", RDMA_DEV], capture_output=True)
    subprocess.run(["ip", "link", "del", NETDEV], capture_output=True)
