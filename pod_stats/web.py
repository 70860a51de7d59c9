"""The exporter's HTTP server: one event-loop thread for every connection.

h11 parses HTTP/1.1, so a connection costs a few kilobytes, never a thread. Limits: a cap on
open connections (at the cap the connection that has waited longest for a request head is
closed to make room; if every one is being answered, the new one is closed at accept), one
deadline per request covering the TLS handshake, head and body, a bound on requests answered at
once, a fixed pool of threads that run the WSGI app, one thread for bcrypt, and a budget for
responses that slow readers leave unread. A bad client is counted, never logged with a
traceback. TLS and basic auth come from pod_stats.webconfig.
"""

import asyncio
import io
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import unquote

import h11
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pod_stats.webconfig import BasicAuth, TlsContexts, WebConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512  # open at once
    max_requests: int = 32  # being answered at once (each holds a response body)
    request_timeout: float = 5.0  # TLS handshake + request head + body, from the first byte
    idle_timeout: float = 60.0  # a kept-alive connection between requests
    write_timeout: float = 10.0  # the response
    max_buffered_bytes: int = 16 << 20  # responses waiting for slow readers, all connections together
    max_head_bytes: int = 16384
    max_body_bytes: int = 65536
    backlog: int = 4096  # a burst of connections waits here, not dropped (capped at net.core.somaxconn)
    workers: int = 4  # threads running the WSGI app


class HttpStats(Collector):
    """Self-metrics of the HTTP server (updated on the event loop only)."""

    DROPS = ("refused", "evicted", "timeout", "malformed", "tls", "reset")

    def __init__(self):
        self.open = 0
        self.dropped = dict.fromkeys(self.DROPS, 0)
        self.responses: dict[str, int] = {}
        self.auth: Optional[BasicAuth] = None

    def collect(self):
        yield _gauge("pod_stats_http_connections", "HTTP connections open now.", self.open)
        dropped = CounterMetricFamily(
            "pod_stats_http_connections_dropped",
            "Connections closed by the server before an answer: refused (at the cap, all "
            "busy), evicted (at the cap, the longest waiting for a request), timeout "
            "(request deadline), malformed (bad HTTP), tls (handshake or client "
            "certificate refused), reset (by the client).",
            labels=["reason"],
        )
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        responses = CounterMetricFamily("pod_stats_http_responses", "HTTP responses by status code.", labels=["code"])
        for code, count in sorted(self.responses.items()):
            responses.add_metric([code], count)
        yield responses
        if self.auth is not None:
            checks = CounterMetricFamily(
                "pod_stats_http_auth_checks",
                "Basic-auth checks: cached (no bcrypt), bcrypt (ran it), throttled (too many waiting: 429).",
                labels=["outcome"],
            )
            for outcome, count in self.auth.outcomes.items():
                checks.add_metric([outcome], count)
            yield checks


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


class _Drop(Exception):
    def __init__(self, reason: str, status: Optional[int] = None):
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(eq=False)
class _Connection:
    client: socket.socket
    waiting_since: float  # monotonic: since when it waits for a handshake or request head
    task: "Optional[asyncio.Task]" = None
    transport: Optional[asyncio.Transport] = None

    def close(self) -> None:
        """Closes it now, whatever its task is doing (a task cancelled before it started runs nothing)."""
        if self.transport is not None:
            self.transport.abort()  # closes the socket when the loop lets go of it
        else:
            self.client.close()
        if self.task is not None:
            self.task.cancel()


REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class HttpServer:
    """Serves a WSGI app from its own event-loop thread (see the module docstring for the limits)."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Callable,
        web_config: "WebConfig",
        stats: HttpStats,
        limits: Limits = Limits(),
        protected: tuple[str, ...] = ("/", "/metrics"),
    ):
        self._host, self._port, self._app, self._limits, self.stats = host, port, app, limits, stats
        self._tls = TlsContexts(web_config.tls) if web_config.tls else None
        self._auth = BasicAuth(web_config.basic_auth_users) if web_config.basic_auth_users else None
        stats.auth = self._auth
        self._headers = [(k.encode(), v.encode()) for k, v in web_config.headers.items()]
        self._protected = protected
        self._connections: dict[_Connection, None] = {}
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()  # longest waiting first
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="pod-stats-http")
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None
        self.server_address: tuple[str, int] = (host, port)
        self._thread = threading.Thread(target=self._run, name="pod-stats-http", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: log.debug("http: %s", context.get("message")))
        self._loop, self._stopped, self._slots = loop, asyncio.Event(), asyncio.Semaphore(self._limits.max_requests)
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            listener = socket.create_server((self._host, self._port), family=family, backlog=self._limits.backlog)
            listener.setblocking(False)
        except BaseException as error:  # bind failures go to the caller of start_http
            self._error = error
            self._ready.set()
            return
        self.server_address = listener.getsockname()[:2]
        self._ready.set()
        accepting = loop.create_task(self._accept(listener))
        await self._stopped.wait()
        accepting.cancel()
        listener.close()
        for connection in list(self._connections):
            connection.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)

    def _make_room(self) -> bool:
        """At the cap: close the connection that has waited longest for a request (a slow or idle client)."""
        if not self._waiting:
            return False
        oldest, _ = self._waiting.popitem(last=False)
        del self._connections[oldest]
        oldest.close()
        self.stats.dropped["evicted"] += 1
        return True

    def _shed_buffers(self) -> None:
        """Over the budget of buffered responses: close the connections that read slowest (the most unread)."""
        sizes = [(c.transport.get_write_buffer_size(), id(c), c) for c in self._connections if c.transport is not None]
        total = sum(size for size, _, _ in sizes)
        for size, _, connection in sorted(sizes, reverse=True):
            if total <= self._limits.max_buffered_bytes:
                break
            del self._connections[connection]
            self._waiting.pop(connection, None)
            connection.close()
            total -= size
            self.stats.dropped["evicted"] += 1

    def _wait(self, connection: _Connection, waiting: bool) -> None:
        """Marks a connection as waiting for a request (evictable, from now) or being answered."""
        if waiting:
            connection.waiting_since = time.monotonic()
            self._waiting[connection] = None
            self._waiting.move_to_end(connection)
        else:
            self._waiting.pop(connection, None)

    async def _accept(self, listener: socket.socket) -> None:
        """Accepts in batches whenever the listener is readable, so the backlog drains fast."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(listener.fileno(), readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                for _ in range(64):  # then the accepted ones run: a burst cannot evict them unread
                    try:
                        client, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as error:  # EMFILE and the like: the connection waits in the backlog
                        log.warning("http: accept failed: %s", error)
                        await asyncio.sleep(0.1)
                        break
                    if len(self._connections) >= self._limits.max_connections and not self._make_room():
                        self.stats.dropped["refused"] += 1
                        client.close()
                        continue
                    client.setblocking(False)
                    connection = _Connection(client, time.monotonic())
                    self._connections[connection] = None
                    self._waiting[connection] = None
                    connection.task = loop.create_task(self._connection(connection))
                self.stats.open = len(self._connections)
        finally:
            loop.remove_reader(listener.fileno())

    async def _connection(self, connection: _Connection) -> None:
        writer: Optional[asyncio.StreamWriter] = None
        try:
            reader, writer = await self._open(connection)
            await self._serve(connection, reader, writer)
        except asyncio.CancelledError:
            pass  # evicted, or the server stops
        except _Drop as drop:
            self.stats.dropped[drop.reason] += 1
            if drop.status and writer is not None and not writer.is_closing():
                self._count(drop.status)
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    % (drop.status, REASONS[drop.status].encode())
                )
        except (ConnectionError, OSError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            self.stats.dropped["reset"] += 1
        except Exception:  # a bug, not a client: said, without killing the server
            log.exception("http: unexpected error")
        finally:
            self._connections.pop(connection, None)
            self._waiting.pop(connection, None)
            self.stats.open = len(self._connections)
            # the transport owns the socket once made: closing the socket too could close a reused fd
            if writer is not None:
                self._close(writer)
            elif connection.transport is not None:
                connection.transport.abort()
            else:
                connection.client.close()

    async def _open(self, connection: _Connection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection as streams, TLS handshake done (within the request deadline)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self._limits.max_head_bytes)
        protocol = asyncio.StreamReaderProtocol(reader)
        timeout = self._limits.request_timeout
        try:
            if self._tls is None:
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, connection.client)
            else:
                opening = loop.connect_accepted_socket(
                    lambda: protocol, connection.client, ssl=self._tls.context(), ssl_handshake_timeout=timeout
                )
                transport, _ = await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            raise _Drop("timeout") from None
        except (ssl.SSLError, ConnectionError, OSError):
            raise _Drop("tls" if self._tls else "reset") from None
        connection.transport = transport
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if self._tls is not None and not self._tls.peer_allowed(writer.get_extra_info("peercert")):
            transport.abort()
            raise _Drop("tls")
        return reader, writer

    @staticmethod
    def _close(writer: asyncio.StreamWriter) -> None:
        """Flushes what was written, then closes (TLS: with close_notify); nothing waits for it."""
        try:
            writer.close()
        except (ConnectionError, OSError, ssl.SSLError):
            writer.transport.abort()

    def _count(self, status: int) -> None:
        self.stats.responses[str(status)] = self.stats.responses.get(str(status), 0) + 1

    async def _serve(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self._limits
        deadline = connection.waiting_since + limits.request_timeout
        peer = writer.get_extra_info("peername") or ("", 0)
        protocol = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
        first = True
        while True:
            if not first:
                self._wait(connection, True)
            if not first and not protocol.trailing_data[0]:
                # keep-alive: wait for the next request's first byte, then its deadline runs
                data = await self._read(reader, time.monotonic() + limits.idle_timeout, idle=True)
                if not data:
                    return
                protocol.receive_data(data)
            if not first:
                deadline = time.monotonic() + limits.request_timeout
            first = False
            request, body = await self._request(protocol, reader, deadline)
            if request is None:
                return
            self._wait(connection, False)
            status, headers, payload = await self._answer(request, peer)
            self._count(status)
            head_only = request.method == b"HEAD"
            raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers] + self._headers
            if not any(k.lower() == b"content-length" for k, _ in raw_headers):
                raw_headers.append((b"Content-Length", str(len(payload)).encode()))
            if request.method not in (b"GET", b"HEAD"):
                raw_headers.append((b"Connection", b"close"))
            writer.write(
                protocol.send(h11.Response(status_code=status, headers=raw_headers, reason=REASONS.get(status, "OK")))
            )
            if payload and not head_only:
                writer.write(protocol.send(h11.Data(data=payload)))
            writer.write(protocol.send(h11.EndOfMessage()))
            if writer.transport.get_write_buffer_size():
                self._shed_buffers()
            try:
                await asyncio.wait_for(writer.drain(), limits.write_timeout)
            except asyncio.TimeoutError:
                raise _Drop("timeout") from None
            if protocol.our_state is not h11.DONE or protocol.their_state is not h11.DONE:
                return
            protocol.start_next_cycle()

    async def _read(self, reader: asyncio.StreamReader, deadline: float, idle: bool = False) -> bytes:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(reader.read(8192), remaining)
        except asyncio.TimeoutError:
            if idle:
                return b""
            raise _Drop("timeout", 408) from None

    async def _request(self, protocol: h11.Connection, reader: asyncio.StreamReader, deadline: float):
        """The next request and its body, all within the deadline; (None, None) when the client closed."""
        request, body = None, bytearray()
        while True:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError as error:
                raise _Drop(
                    "malformed", error.error_status_hint if error.error_status_hint in REASONS else 400
                ) from None
            if event is h11.NEED_DATA:
                data = await self._read(reader, deadline)
                protocol.receive_data(data)
                if not data and request is None and protocol.their_state is h11.IDLE:
                    return None, None
                continue
            if isinstance(event, h11.ConnectionClosed):
                if request is not None:
                    raise _Drop("reset")
                return None, None
            if isinstance(event, h11.Request):
                request = event
                if event.method not in (b"GET", b"HEAD"):
                    return request, b""  # answered 405 and closed: its body is never read
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._limits.max_body_bytes:
                    raise _Drop("malformed", 413)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)

    async def _answer(self, request: h11.Request, peer) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.method not in (b"GET", b"HEAD"):
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"method not allowed\n"
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        path = unquote(path, encoding="latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        if self._auth is not None and path in self._protected:
            ok = await self._auth.check(headers.get("authorization", ""))
            if ok is None:
                return 429, [("Content-Type", "text/plain"), ("Retry-After", "1")], b"too many auth checks\n"
            if not ok:
                return (
                    401,
                    [("WWW-Authenticate", 'Basic realm="pod-stats"'), ("Content-Type", "text/plain")],
                    b"unauthorized\n",
                )
        environ = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SCRIPT_NAME": "",
            "SERVER_NAME": str(self.server_address[0]),
            "SERVER_PORT": str(self.server_address[1]),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": str(peer[0]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._tls else "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._pool, _call_wsgi, self._app, environ)
        except RuntimeError:  # the pool is shut down: the server is stopping
            raise _Drop("reset") from None


def _call_wsgi(app: Callable, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    response: list = []

    def start_response(status: str, headers, exc_info=None):
        response[:] = [int(status.split(" ", 1)[0]), list(headers)]

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return response[0], response[1], body


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPv6]:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def start_http(
    address: str, app: Callable, web_config: WebConfig, stats: Optional[HttpStats] = None, limits: Limits = Limits()
) -> HttpServer:
    """Serves `app` from a background thread; returns the server (for its address and shutdown)."""
    host, port = parse_listen_address(address)
    return HttpServer(host, port, app, web_config, stats or HttpStats(), limits)
