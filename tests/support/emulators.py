"""Emulators of what cannot run natively here, started on free loopback ports:
fakesnow's Snowflake server mode (in this process, reached over HTTP by the real
Snowflake connector) and moto's S3 server (a subprocess)."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: The Snowflake connector otherwise probes cloud metadata endpoints on login; pass this
#: to every process (a ``reflow serve`` too) that logs in to the emulator.
SNOWFLAKE_ENV = {"SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def fakesnow_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a fakesnow server (databases made on first use)."""
    import uvicorn

    server_module = importlib.import_module("fakesnow.server")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(server_module.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        pytest.fail("the fakesnow server did not start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def fakesnow_connect(endpoint: str, **kwargs: Any) -> Any:
    """An admin connection to the emulator through the real connector."""
    import snowflake.connector

    return snowflake.connector.connect(
        account="admin",
        user="admin",
        password="x",
        host="127.0.0.1",
        port=int(endpoint.rsplit(":", 1)[1]),
        protocol="http",
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        **kwargs,
    )


@contextmanager
def moto_s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto_server subprocess."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not come up on port {port}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
