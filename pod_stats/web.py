"""The exporter's HTTP side: web config (exporter-toolkit's format), TLS, basic auth, server.

One event-loop thread owns every connection (h11 parses HTTP/1.1), so a connection costs a
few kilobytes, never a thread. Limits: a cap on open connections (at the cap the connection
that has waited longest for a request head is closed to make room; if every one is being
answered, the new one is closed at accept), one deadline per request covering the TLS
handshake, head and body, a bound on requests answered at once, a fixed pool of threads that
run the WSGI app, one thread for bcrypt, and a budget for responses that slow readers leave
unread. A bad client is counted, never logged with a
traceback. The web config is exporter-toolkit's; a key it has and pod-stats does not implement
is refused at start (WebConfigUnsupported), never ignored.
"""

import asyncio
import base64
import binascii
import hashlib
import io
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import unquote

import h11
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class WebConfigError(Exception):
    """A web config that is malformed (a usage error)."""


class WebConfigUnsupported(WebConfigError):
    """A web-config key exporter-toolkit has and pod-stats does not implement: refused, never ignored."""


# -- web config ----------------------------------------------------------------------------

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names (tls.CipherSuites() and the RSA key-exchange ones) → OpenSSL's.
GO_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable in Go either: accepted, and they change nothing.
GO_TLS13_CIPHERS = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
GO_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Python's ssl cannot ask for a client certificate without verifying it.
CLIENT_AUTH_UNSUPPORTED = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
# exporter-toolkit's extraHTTPHeaders: which headers http_server_config may set, and their allowed values.
EXTRA_HEADERS: dict[str, Optional[tuple[str, ...]]] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
TLS_KEYS = {
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
}
BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass
class TlsSettings:
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    client_ca_file: Optional[str] = None
    client_ca: Optional[str] = None
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: Optional[str] = None  # OpenSSL cipher list (TLS 1.2 and older)
    curve: Optional[str] = None
    prefer_server_ciphers: bool = True
    allowed_sans: Optional[list[str]] = None


@dataclass
class WebConfig:
    """The Prometheus exporter-toolkit web config: TLS, response headers and basic auth (bcrypt hashes)."""

    tls: Optional[TlsSettings] = None
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)


def _mapping(value, what: str, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"web config {path}: {what} must be a mapping")
    return value


def _unknown(keys, known, what: str, path: str) -> None:
    unknown = sorted(str(key) for key in keys if key not in known)
    if unknown:
        raise WebConfigError(f"web config {path}: unknown key {unknown[0]!r} in {what}")


def load_web_config(path: str) -> WebConfig:
    try:
        import bcrypt  # noqa: F401  (checked here so a missing extra fails at start, not at the first scrape)
        import yaml
    except ImportError:
        raise WebConfigError("--web-config-file needs the web extra: pip install 'pod-stats[web]'") from None
    try:
        with open(path) as handle:
            document = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as error:
        raise WebConfigError(f"cannot read web config {path}: {error}") from None
    if not isinstance(document, dict):
        raise WebConfigError(f"web config {path} is not a mapping")
    _unknown(document, {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}, "the file", path)
    if document.get("rate_limit") is not None:
        raise WebConfigUnsupported(
            f"web config {path}: rate_limit is not supported by pod-stats (its limits are "
            "fixed: see the README's Exporter section)"
        )
    tls = _mapping(document.get("tls_server_config"), "tls_server_config", path)
    http = _mapping(document.get("http_server_config"), "http_server_config", path)
    users = document.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError(f"web config {path}: tls_server_config and basic_auth_users must be mappings")
    _unknown(tls, TLS_KEYS, "tls_server_config", path)
    _unknown(http, {"http2", "headers"}, "http_server_config", path)
    if http.get("http2") is True:
        raise WebConfigUnsupported(
            f"web config {path}: http_server_config http2: true is not supported "
            "(pod-stats serves HTTP/1.1; say http2: false)"
        )
    headers = {str(k): str(v) for k, v in _mapping(http.get("headers"), "headers", path).items()}
    for name, value in headers.items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(f"web config {path}: HTTP header {name!r} can not be configured")
        allowed = EXTRA_HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(f"web config {path}: invalid value for {name}: expected one of {', '.join(allowed)}")
    hashes = {}
    for user, hashed in users.items():
        if not BCRYPT_HASH.match(str(hashed)):
            raise WebConfigError(f"web config {path}: the password of {user!r} is not a bcrypt hash")
        hashes[str(user)] = str(hashed).encode()
    return WebConfig(_tls_settings(tls, os.path.dirname(os.path.abspath(path)), path), headers, hashes)


def _tls_settings(tls: dict, directory: str, path: str) -> Optional[TlsSettings]:
    """exporter-toolkit's ConfigToTLSConfig, checks and defaults included; None when TLS is off."""

    def text(key: str) -> Optional[str]:
        value = tls.get(key)
        if value is not None and not isinstance(value, str):
            raise WebConfigError(f"web config {path}: tls_server_config {key} must be a string")
        return value or None

    def file(key: str) -> Optional[str]:
        value = text(key)
        return os.path.join(directory, value) if value else None  # relative to the config, as exporter-toolkit

    settings = TlsSettings(
        cert_file=file("cert_file"),
        key_file=file("key_file"),
        cert=text("cert"),
        key=text("key"),
        client_ca_file=file("client_ca_file"),
        client_ca=text("client_ca"),
    )
    client_auth = text("client_auth_type") or ""
    if not any(
        (
            settings.cert_file,
            settings.key_file,
            settings.cert,
            settings.key,
            settings.client_ca_file,
            settings.client_ca,
            client_auth,
        )
    ):
        return None
    if not (settings.cert_file or settings.cert):
        raise WebConfigError(f"web config {path}: tls_server_config needs one of cert or cert_file")
    if not (settings.key_file or settings.key):
        raise WebConfigError(f"web config {path}: tls_server_config needs one of key or key_file")
    if client_auth in CLIENT_AUTH_UNSUPPORTED:
        raise WebConfigUnsupported(
            f"web config {path}: client_auth_type {client_auth} is not supported (Python's "
            "ssl cannot ask for a client certificate without verifying it); use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if client_auth not in CLIENT_AUTH:
        raise WebConfigError(f"web config {path}: invalid client_auth_type {client_auth!r}")
    settings.verify_mode = CLIENT_AUTH[client_auth]
    if (settings.client_ca_file or settings.client_ca) and settings.verify_mode == ssl.CERT_NONE:
        raise WebConfigError(f"web config {path}: client CAs have been configured without a client_auth_type")
    for key, attribute in (("min_version", "min_version"), ("max_version", "max_version")):
        if tls.get(key) is not None:
            if tls[key] not in TLS_VERSIONS:
                raise WebConfigError(
                    f"web config {path}: unknown TLS version {tls[key]!r} (one of {', '.join(TLS_VERSIONS)})"
                )
            setattr(settings, attribute, TLS_VERSIONS[tls[key]])
    if settings.min_version > settings.max_version:
        raise WebConfigError(f"web config {path}: min_version is above max_version")
    suites = tls.get("cipher_suites") or []
    if not isinstance(suites, list):
        raise WebConfigError(f"web config {path}: cipher_suites must be a list")
    for suite in suites:
        if suite not in GO_CIPHERS and suite not in GO_TLS13_CIPHERS:
            raise WebConfigError(f"web config {path}: unknown cipher {suite!r}")
    if any(suite in GO_CIPHERS for suite in suites):
        settings.ciphers = ":".join(GO_CIPHERS[suite] for suite in suites if suite in GO_CIPHERS)
    curves = tls.get("curve_preferences") or []
    if not isinstance(curves, list):
        raise WebConfigError(f"web config {path}: curve_preferences must be a list")
    for curve in curves:
        if curve not in GO_CURVES:
            raise WebConfigError(f"web config {path}: unknown curve {curve!r}")
    if len(curves) > 1:
        raise WebConfigUnsupported(
            f"web config {path}: curve_preferences of more than one curve is not supported "
            "(Python's ssl restricts key exchange to one curve); name one"
        )
    settings.curve = GO_CURVES[curves[0]] if curves else None
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"web config {path}: prefer_server_cipher_suites must be true or false")
    settings.prefer_server_ciphers = prefer
    sans = tls.get("client_allowed_sans")
    if sans is not None:
        if not isinstance(sans, list):
            raise WebConfigError(f"web config {path}: client_allowed_sans must be a list")
        if settings.verify_mode != ssl.CERT_REQUIRED:
            raise WebConfigError(
                f"web config {path}: client_allowed_sans requires client_auth_type RequireAndVerifyClientCert"
            )
        settings.allowed_sans = [str(san) for san in sans]
    TlsContexts(settings)  # certificates, key and CAs load now, or the start fails
    return settings


# -- TLS -----------------------------------------------------------------------------------


def _memory_file(data: str) -> int:
    fd = os.memfd_create("pod-stats-tls", os.MFD_CLOEXEC)
    os.write(fd, data.encode())
    return fd


class TlsContexts:
    """The SSLContext for the next handshake: rebuilt when a certificate, key or CA file changes
    (exporter-toolkit re-reads them per handshake); a change that does not load keeps the last good one."""

    def __init__(self, settings: TlsSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._signature = self._files()
        self._failed: Optional[tuple] = None
        try:
            self._context = self._build()
        except (OSError, ssl.SSLError, ValueError) as error:
            raise WebConfigError(f"TLS: {error}") from None

    def _files(self) -> tuple:
        signature = []
        for name in (self.settings.cert_file, self.settings.key_file, self.settings.client_ca_file):
            try:
                stat = os.stat(name) if name else None
                signature.append(stat and (stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except OSError:
                signature.append(None)
        return tuple(signature)

    def _build(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version, context.maximum_version = s.min_version, s.max_version
        if s.ciphers:
            context.set_ciphers(s.ciphers)
        if s.curve:
            context.set_ecdh_curve(s.curve)
        if s.prefer_server_ciphers:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        fds = []
        try:
            cert = s.cert_file
            if cert is None:
                fds.append(_memory_file(s.cert or ""))
                cert = f"/proc/self/fd/{fds[-1]}"
            key = s.key_file
            if key is None:
                fds.append(_memory_file(s.key or ""))
                key = f"/proc/self/fd/{fds[-1]}"
            context.load_cert_chain(cert, key)
        finally:
            for fd in fds:
                os.close(fd)
        context.verify_mode = s.verify_mode
        if s.verify_mode != ssl.CERT_NONE:
            if s.client_ca_file:
                context.load_verify_locations(cafile=s.client_ca_file)
            elif s.client_ca:
                context.load_verify_locations(cadata=s.client_ca)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return context

    def context(self) -> ssl.SSLContext:
        signature = self._files()
        with self._lock:
            if signature != self._signature and signature != self._failed:
                try:
                    self._context = self._build()
                    self._signature = signature
                    log.info("TLS: certificate files changed, reloaded")
                except (OSError, ssl.SSLError, ValueError) as error:
                    self._failed = signature
                    log.warning("TLS: certificate files changed but do not load, keeping the last good ones: %s", error)
            return self._context

    def peer_allowed(self, peer: Optional[dict]) -> bool:
        """client_allowed_sans: some DNS, email, IP or URI SAN of the client's certificate is listed."""
        allowed = self.settings.allowed_sans
        if allowed is None:
            return True
        for kind, value in (peer or {}).get("subjectAltName", ()):
            if kind == "IP Address":
                try:
                    value = str(ipaddress.ip_address(value.strip()))
                except ValueError:
                    continue
            if kind in ("DNS", "email", "IP Address", "URI") and value in allowed:
                return True
        return False


# -- basic auth ----------------------------------------------------------------------------


class BasicAuth:
    """exporter-toolkit's basic auth: an unknown user is checked against a dummy hash of the same
    cost (no timing difference), verified credentials are cached by a digest of user, hash and
    password, and bcrypt runs on one thread with a bounded queue (beyond it: 429, no bcrypt)."""

    def __init__(self, users: dict[str, bytes], queue: int = 8):
        import bcrypt

        self._users = users
        cost = max(int(BCRYPT_HASH.match(h.decode()).group(1)) for h in users.values())  # type: ignore[union-attr]
        self._dummy = bcrypt.hashpw(b"pod-stats: no such user", bcrypt.gensalt(rounds=cost))
        self._good: OrderedDict[bytes, None] = OrderedDict()  # valid credentials: attackers cannot evict them
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pod-stats-bcrypt")
        self._queue = queue
        self._waiting = 0
        self.outcomes = {"cached": 0, "bcrypt": 0, "throttled": 0}

    @staticmethod
    def _parse(header: str) -> Optional[tuple[str, str]]:
        if not header.startswith("Basic "):
            return None
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    async def check(self, header: str) -> Optional[bool]:
        """True or False; None when too many checks wait already (answer 429)."""
        parsed = self._parse(header)
        if parsed is None:
            return False
        user, password = parsed
        known = self._users.get(user)
        valid_user = known is not None
        hashed = known if known is not None else self._dummy
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password.encode()))).digest()
        for cache, result in ((self._good, True), (self._bad, False)):
            if key in cache:
                cache.move_to_end(key)
                self.outcomes["cached"] += 1
                return result
        if self._waiting >= self._queue:
            self.outcomes["throttled"] += 1
            return None
        self._waiting += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._pool, _checkpw, password.encode(), hashed)
        finally:
            self._waiting -= 1
        self.outcomes["bcrypt"] += 1
        ok = ok and valid_user
        cache = self._good if ok else self._bad
        cache[key] = None
        while len(cache) > (64 if ok else 1024):
            cache.popitem(last=False)
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


# -- server --------------------------------------------------------------------------------


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
