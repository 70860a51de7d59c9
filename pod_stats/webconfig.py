"""The exporter's web config (exporter-toolkit's format), its TLS contexts and basic auth.

The file is exporter-toolkit's, so one Prometheus scrape config fits every exporter on a node.
A key it has and pod-stats does not implement is refused at start (WebConfigUnsupported), never
ignored. TLS certificate files are reloaded when they change (the last good ones kept if the new
ones do not load); basic-auth passwords are checked with bcrypt in constant time, the outcome
cached, so a scrape does not pay bcrypt's cost each time.
"""

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

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
        raise WebConfigError("--web.config.file needs the web extra: pip install 'pod-stats[web]'") from None
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
