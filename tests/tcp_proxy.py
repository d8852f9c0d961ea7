"""A TCP proxy on loopback that can drop one reply: the network failure of drill R10.

It forwards every connection to an upstream port, byte for byte. Armed with a marker
(`cut_next_reply(b"EVAL")`), it lets the next request that carries the marker reach the
upstream server, then closes that connection instead of forwarding the server's reply:
the server did the work, the client never hears of it.

It knows one thing of PostgreSQL's protocol: asyncpg prepares a statement once per
connection (a Parse message carries its text and a name) and later runs it by name (a
Bind message): a request that binds a statement whose text carries the marker carries it.
"""

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class Cut:
    """One reply the proxy dropped."""

    markers_in_request: int
    """How often the marker occurs in the request whose reply was dropped."""
    reply_bytes_dropped: int = 0


@dataclass
class Link:
    """One client connection and its upstream connection."""

    client: socket.socket
    upstream: socket.socket
    cut: Cut | None = None
    """Set once this link's next reply is to be dropped."""
    statements: dict[bytes, bytes] = field(default_factory=dict)
    """The statements prepared on this link: asyncpg's name -> text."""
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttingProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.marker: bytes | None = None
        self.cuts: list[Cut] = []
        self.forwarded: dict[bytes, int] = {}
        """Marker -> how often requests carried it to the server (re-sends included)."""
        self.links: list[Link] = []
        self.running = True

    def cut_next_reply(self, marker: bytes) -> None:
        """Drop the reply to the next request that carries `marker`, and close its link."""
        with self.lock:
            self.marker = marker
            self.forwarded.setdefault(marker, 0)

    def serve(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the server is down: so is the link
                client.close()
                continue
            link = Link(client, upstream)
            with self.lock:
                self.links.append(link)
            threading.Thread(target=self.requests, args=(link,), daemon=True).start()
            threading.Thread(target=self.replies, args=(link,), daemon=True).start()

    def requests(self, link: Link) -> None:
        """Client -> server; arms the link when a request carries the marker."""
        while chunk := receive(link.client):
            link.statements.update(PARSE.findall(chunk))
            bound = b"".join(link.statements.get(name, b"") for name in BIND.findall(chunk))
            with self.lock:
                for marker in self.forwarded:
                    self.forwarded[marker] += chunk.count(marker)
                if self.marker is not None and self.marker in chunk + bound:
                    link.cut = Cut(markers_in_request=(chunk + bound).count(self.marker))
                    self.marker = None
            if not send(link.upstream, chunk):
                break
        link.close()

    def replies(self, link: Link) -> None:
        """Server -> client, unless the link is armed: then the reply is dropped."""
        while chunk := receive(link.upstream):
            if link.cut is not None:
                link.cut.reply_bytes_dropped = len(chunk)
                with self.lock:
                    self.cuts.append(link.cut)
                break
            if not send(link.client, chunk):
                break
        link.close()

    def stop(self) -> None:
        self.running = False
        self.listener.close()
        with self.lock:
            links = list(self.links)
        for link in links:
            link.close()


# PostgreSQL's Parse ('P', length, name, text) and Bind ('B', length, portal, name)
# messages of statements that asyncpg names.
PARSE = re.compile(rb"P[\s\S]{4}(__asyncpg_stmt_[0-9a-f]+__)\x00([^\x00]*)\x00")
BIND = re.compile(rb"B[\s\S]{4}[^\x00]*\x00(__asyncpg_stmt_[0-9a-f]+__)\x00")


def receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


@contextmanager
def cutting_proxy(upstream_port: int) -> Iterator[CuttingProxy]:
    """A running `CuttingProxy` to `upstream_port`, stopped on exit."""
    proxy = CuttingProxy(upstream_port)
    threading.Thread(target=proxy.serve, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.stop()
