"""``zoo view``: show an ONNX model's graph in the browser with netron.

netron (the ``netron`` package) serves the model and its own web app over HTTP from
this process. It serves on 127.0.0.1 unless the caller names another host: netron
answers requests for any file in the model's directory (that is how it finds a
large model's ``NAME.onnx.data``), so it should not be reachable from other machines
unless the user asks for that.

    address = serve("digits.onnx", browse=False)   # ("127.0.0.1", 40123); returns at once
    stop(address)
    view("digits.onnx")                              # prints the address, blocks until Ctrl-C
"""

from __future__ import annotations

import logging
import os
import sys
import time
import webbrowser
from pathlib import Path

from zoo.errors import UsageError

__all__ = ["serve", "stop", "view", "url"]

#: What `zoo view` accepts, for error messages.
ACCEPTED = "an ONNX model file such as model.onnx (e.g. written by `zoo export`)"


def url(address: tuple[str, int]) -> str:
    """``http://HOST:PORT`` for an address `serve` returned."""
    host, port = address
    return f"http://{host}:{port}"


def check_onnx(path: str | os.PathLike[str]) -> Path:
    """Return `path` if it is a readable ONNX model file; raise a one-line `UsageError` otherwise.

    Only the protobuf is parsed (external tensor data is not loaded): enough to refuse a
    missing file, a directory or a file of another format before a server starts.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}; zoo view takes {ACCEPTED}")
    if not path.is_file():
        raise UsageError(f"{path} is not a file; zoo view takes {ACCEPTED}")
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is part of the onnx extra
        raise UsageError("zoo view needs the onnx package: pip install 'zoo[onnx]'") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
        if model.ir_version <= 0 or not model.HasField("graph"):
            raise ValueError("no graph")
    except Exception:  # noqa: BLE001 - any parse failure means "not ONNX"
        raise UsageError(f"{path} is not an ONNX model; zoo view takes {ACCEPTED}") from None
    return path


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int | None = None,
          browse: bool = True) -> tuple[str, int]:
    """Serve the ONNX model at `path` with netron on `host`:`port` and return ``(host, port)``.

    Returns once the server is listening; it runs in a daemon thread of this process
    until `stop` (or the process ends). `port` None or 0 picks a free port; `host` is
    bound exactly as given (default loopback only). With `browse`, the default web
    browser opens the page. Raises `UsageError` for a file that is not an ONNX model
    (before anything starts), a bad port, or an address that cannot be bound.
    """
    path = check_onnx(path)
    if port is None:
        port = 0
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be an integer from 0 to 65535 (0: any free port), not {port!r}")
    if not isinstance(host, str) or not host:
        raise UsageError(f"host must be a host name or IPv4 address such as 127.0.0.1, not {host!r}")

    import netron

    # netron.serve calls logging.basicConfig() when the root logger has no handlers, which
    # would reconfigure the caller's logging and print netron's own "Serving ..." line.
    # A NullHandler on the root for the duration of the call prevents that.
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard:
        root.addHandler(guard)
    try:
        address = netron.serve(str(path), None, address=(host, port), browse=False)
    except OSError as exc:  # port in use, address not on this machine, unknown host name
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot serve on {host}:{port or 'any port'}: {reason}"
                         + ("; leave out --port for a free one" if port else "")) from None
    finally:
        if guard:
            root.removeHandler(guard)
    address = (address[0], int(address[1]))
    if browse and not webbrowser.open(url(address)):
        print(f"zoo: no web browser found; open {url(address)}", file=sys.stderr)
    return address


def stop(address: tuple[str, int] | None = None, *, timeout: float = 2.0) -> None:
    """Stop serving at `address` (every netron server of this process if None) and wait for it."""
    import netron

    netron.stop(address)
    deadline = time.monotonic() + timeout
    while netron.status(address) and time.monotonic() < deadline:
        time.sleep(0.02)


def view(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int | None = None,
         browse: bool = True) -> tuple[str, int]:
    """Serve `path` with netron, print its address and block until Ctrl-C; then stop and return.

    Returns the address it served on. Ctrl-C (KeyboardInterrupt) is the normal way
    out: it is not re-raised.
    """
    address = serve(path, host=host, port=port, browse=browse)
    print(f"netron: serving {path} at {url(address)} (Ctrl-C to stop)", flush=True)
    import netron

    try:
        while netron.status(address):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop(address)
    return address
