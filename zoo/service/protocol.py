"""The HTTP/1.1 protocol ``zoo serve`` runs where httptools is installed: uvicorn's httptools one (llhttp), with
each request head bounded as uvicorn's h11 one bounds it, and every refusal the API's one line of JSON.

llhttp puts no limit on a request's line and headers, and uvicorn's protocol keeps what it
is given: a peer could send headers without end. `BoundedHttpToolsProtocol` counts the bytes
of each request head (from its first byte to the end of its headers) as they arrive and
hands the parser no more of it than the bound (``h11_max_incomplete_event_size`` of uvicorn's
config, the bound h11 takes); a longer head, or one of more than `MAX_HEADER_LINES` header
lines, is answered 431 and the connection closed. A request the parser refuses (bad syntax,
a body that could be framed two ways) is answered 400 with the parser's reason, and the
connection closed, as uvicorn does in plain text.

Bytes are counted per read from the socket. A head that begins inside a read that also
held the end of the previous request (pipelining) is counted from the next read on: it
is refused at most one read (256 KiB) later than one that begins a read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from zoo.service.guards import refusal

__all__ = ["MAX_HEADER_LINES", "BoundedHttpToolsProtocol"]

MAX_HEADER_LINES = 100  # header lines of one request: as Apache's and Tomcat's default; browsers send 10 to 20


class _TooManyLines(Exception):
    """Raised in the parser's header callback: stops the parser at the header line past the limit."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each request head bounded in bytes and in lines (431 past either), and
    what the parser refuses answered 400 in the API's JSON."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.h11_max_incomplete_event_size is None:
            raise ValueError("BoundedHttpToolsProtocol needs h11_max_incomplete_event_size in uvicorn's config")
        self.max_head: int = config.h11_max_incomplete_event_size
        self.head: int | None = 0  # bytes of the current request head so far; None while its body is read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Coalescing(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        """Parse `data`, handing the parser a request head's bytes only up to the bound (uvicorn's
        ``data_received`` otherwise: an upgrade is handed on or refused as there)."""
        self._unset_keepalive_if_required()
        rest = memoryview(data)
        while rest:
            if self.head is None:
                piece = rest
            else:
                piece = rest[:self.max_head - self.head]
                self.head += len(piece)
            rest = rest[len(piece):]
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _TooManyLines):
                    self._refuse(431, f"the request has over {MAX_HEADER_LINES} header lines; this server "
                                      f"accepts at most {MAX_HEADER_LINES}")
                else:
                    self._refuse(400, f"the request is not valid HTTP/1.1: {str(exc) or type(exc).__name__}")
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            if self.head is not None and self.head >= self.max_head:  # the bound reached, the head unfinished
                self._refuse(431, f"the request's line and headers are over {self.max_head} bytes; this server "
                                  f"accepts at most {self.max_head}")
                return

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADER_LINES:
            raise _TooManyLines
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.head = 0  # the next request's head starts with the next byte
        super().on_message_complete()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` (the API's one line of JSON) and close the connection."""
        self.logger.warning("Request refused (%d): %s", status, message)
        answer = refusal(status, message, {"Connection": "close"})
        headers = [*self.server_state.default_headers, *answer.raw_headers]
        self.transport.write(b"".join([STATUS_LINE[status], *(b"%s: %s\r\n" % header for header in headers),
                                       b"\r\n", bytes(answer.body)]))
        self.transport.close()


class _Coalescing:
    """A connection's transport whose writes within one turn of the event loop go out together, in one system
    call: uvicorn writes an answer's status line and headers, then its body, each at once (two sends, two
    packets on the wire, for every small answer)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.writelines(held)

    def close(self) -> None:
        """Close after what is held: written at once (uvloop sends it before the socket closes, so that a peer
        still sending an unread body gets the answer before the reset), not by `writelines`, which may wait."""
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(b"".join(held))
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
