"""A uvicorn server on a free loopback port, in a thread of the test process (the browser and fuzz tests)."""

from __future__ import annotations

import socket
import threading
import time


def serve_in_thread(app, timeout: float = 30.0):
    """Serve the ASGI ``app`` on 127.0.0.1; returns (``http://127.0.0.1:PORT``, server, thread) once it listens.
    Stop it with ``server.should_exit = True; thread.join()``."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread
