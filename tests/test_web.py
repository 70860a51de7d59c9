"""The exporter's web config, key by key, against real TLS clients (openssl s_client, curl,
Python's ssl) with certificates made here; basic auth's timing, cache and bound; refusals."""

import base64
import contextlib
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import POD_STATS, free_port

from pod_stats.web import HttpStats, Limits, start_http
from pod_stats.webconfig import WebConfig, load_web_config


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA, a server certificate for 127.0.0.1, client certificates with SANs, and a stranger CA."""

    def __init__(self, root: Path):
        self.root = root
        for ca in ("ca", "stranger"):
            _openssl(
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={ca}",
                "-keyout",
                f"{ca}.key",
                "-out",
                f"{ca}.pem",
                cwd=root,
            )
        self.server("server", "rsa")
        self.client("client", "ca", "DNS:prometheus.monitoring")
        self.client("other", "ca", "DNS:intruder.example")
        self.client("outsider", "stranger", "DNS:prometheus.monitoring")

    def _signed(self, name: str, ca: str, subject: str, san: str, key: str = "ec") -> None:
        keyopt = ["-newkey", "rsa:2048"] if key == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        _openssl(
            "req", *keyopt, "-nodes", "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=self.root
        )
        (self.root / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.pem",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.pem",
            cwd=self.root,
        )

    def server(self, name: str, key: str = "rsa") -> None:
        self._signed(name, "ca", "/CN=pod-stats", "IP:127.0.0.1", key)

    def client(self, name: str, ca: str, san: str) -> None:
        self._signed(name, ca, f"/CN={name}", san)

    def path(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def serving(tmp_path: Path, config: str):
    (tmp_path / "web.yml").write_text(config)
    stats = HttpStats()
    server = start_http(f"127.0.0.1:{free_port()}", _app, load_web_config(str(tmp_path / "web.yml")), stats)
    try:
        yield server.server_address[1], stats
    finally:
        server.shutdown()


def _tls(pki: Pki, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki.path('server.pem')}\n  key_file: {pki.path('server.key')}\n{extra}"


def _curl(port: int, pki: Pki, cert: str = "", path: str = "/metrics") -> subprocess.CompletedProcess:
    args = [
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--cacert",
        pki.path("ca.pem"),
        "-o",
        "/dev/null",
        "-D",
        "-",
        f"https://127.0.0.1:{port}{path}",
    ]
    if cert:
        args += ["--cert", pki.path(f"{cert}.pem"), "--key", pki.path(f"{cert}.key")]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )


def _negotiated(result: subprocess.CompletedProcess) -> str:
    """The cipher s_client negotiated, or "" when the handshake failed."""
    for line in result.stdout.splitlines():
        if "Cipher is" in line:
            cipher = line.rsplit(" ", 1)[1]
            return "" if cipher == "(NONE)" else cipher
    return ""


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_cert_file_and_key_file_serve_tls_only(pki, tmp_path):
    with serving(tmp_path, _tls(pki)) as (port, stats):
        assert _curl(port, pki).stdout.startswith("HTTP/1.1 200")
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3)
        assert _curl(port, pki).stdout.startswith("HTTP/1.1 200")
        assert stats.dropped["tls"] >= 1


@needs_curl
def test_inline_cert_and_key_serve_tls(pki, tmp_path):
    cert = Path(pki.path("server.pem")).read_text().replace("\n", "\n    ")
    key = Path(pki.path("server.key")).read_text().replace("\n", "\n    ")
    with serving(tmp_path, f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n") as (port, _):
        assert _curl(port, pki).stdout.startswith("HTTP/1.1 200")


def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            certificate = tls.getpeercert(binary_form=True)
            assert certificate is not None
            return certificate


def test_certificate_files_reload_when_they_change_and_a_bad_change_keeps_the_last_good(pki, tmp_path):
    shutil.copy(pki.path("server.pem"), tmp_path / "tls.pem")
    shutil.copy(pki.path("server.key"), tmp_path / "tls.key")
    config = "tls_server_config:\n  cert_file: tls.pem\n  key_file: tls.key\n"  # relative to the config file
    with serving(tmp_path, config) as (port, _):
        first = _served_certificate(port)
        pki.server("renewed")
        shutil.copy(pki.path("renewed.pem"), tmp_path / "tls.pem.new")
        shutil.copy(pki.path("renewed.key"), tmp_path / "tls.key")
        os.replace(tmp_path / "tls.pem.new", tmp_path / "tls.pem")
        renewed = _served_certificate(port)
        assert renewed != first and renewed == ssl.PEM_cert_to_DER_cert(Path(pki.path("renewed.pem")).read_text())
        (tmp_path / "tls.key").write_text("not a key\n")  # half-written: the last good pair stays
        assert _served_certificate(port) == renewed


@needs_curl
def test_require_and_verify_client_cert(pki, tmp_path):
    config = _tls(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.path('ca.pem')}\n")
    with serving(tmp_path, config) as (port, stats):
        assert _curl(port, pki, cert="client").stdout.startswith("HTTP/1.1 200")
        for cert in ("", "outsider"):
            result = _curl(port, pki, cert=cert)
            assert not result.stdout.startswith("HTTP/1.1 200"), (cert, result.stdout)
        assert stats.responses == {"200": 1}


@needs_curl
def test_verify_client_cert_if_given_with_an_inline_ca(pki, tmp_path):
    ca = Path(pki.path("ca.pem")).read_text().replace("\n", "\n    ")
    config = _tls(pki, f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n    {ca}\n")
    with serving(tmp_path, config) as (port, _):
        assert _curl(port, pki).stdout.startswith("HTTP/1.1 200")
        assert _curl(port, pki, cert="client").stdout.startswith("HTTP/1.1 200")
        assert not _curl(port, pki, cert="outsider").stdout.startswith("HTTP/1.1 200")


@needs_curl
def test_client_allowed_sans(pki, tmp_path):
    config = _tls(
        pki,
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.path('ca.pem')}\n"
        "  client_allowed_sans: [prometheus.monitoring]\n",
    )
    with serving(tmp_path, config) as (port, stats):
        assert _curl(port, pki, cert="client").stdout.startswith("HTTP/1.1 200")
        assert not _curl(port, pki, cert="other").stdout.startswith("HTTP/1.1 200")
        assert stats.responses == {"200": 1} and stats.dropped["tls"] == 1


def test_min_version(pki, tmp_path):
    with serving(tmp_path, _tls(pki, "  min_version: TLS13\n")) as (port, _):
        assert _negotiated(_s_client(port, "-tls1_3"))
        assert not _negotiated(_s_client(port, "-tls1_2"))


def test_max_version(pki, tmp_path):
    with serving(tmp_path, _tls(pki, "  max_version: TLS12\n")) as (port, _):
        assert _negotiated(_s_client(port, "-tls1_2"))
        assert not _negotiated(_s_client(port, "-tls1_3"))


def test_cipher_suites_by_go_name(pki, tmp_path):
    config = _tls(pki, "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n")
    with serving(tmp_path, config) as (port, _):
        assert _negotiated(_s_client(port, "-cipher", "ECDHE-RSA-AES256-GCM-SHA384")) == "ECDHE-RSA-AES256-GCM-SHA384"
        assert not _negotiated(_s_client(port, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"))


@pytest.mark.parametrize(
    "prefer, expected", [(True, "ECDHE-RSA-AES256-GCM-SHA384"), (False, "ECDHE-RSA-AES128-GCM-SHA256")]
)
def test_prefer_server_cipher_suites(pki, tmp_path, prefer, expected):
    config = _tls(
        pki,
        "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "
        f"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: {str(prefer).lower()}\n",
    )
    with serving(tmp_path, config) as (port, _):
        offered = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
        assert _negotiated(_s_client(port, "-cipher", offered)) == expected


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_one_curve_preference(pki, tmp_path, version):
    with serving(tmp_path, _tls(pki, "  curve_preferences: [CurveP384]\n")) as (port, _):
        assert _negotiated(_s_client(port, version, "-groups", "P-384"))
        assert not _negotiated(_s_client(port, version, "-groups", "P-256:X25519"))


def test_http_server_config_headers_and_no_server_banner(tmp_path):
    config = (
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n"
    )
    with serving(tmp_path, config) as (port, _):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["X-Frame-Options"] == "deny"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Server"] is None


@pytest.mark.parametrize(
    "content, phrase",
    [
        (
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: RequestClientCert\n",
            "RequestClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  curve_preferences: [X25519, CurveP256]\n",
            "curve_preferences",
        ),
        ("http_server_config:\n  http2: true\n", "http2"),
        ("rate_limit:\n  burst: 10\n  interval: 1s\n", "rate_limit"),
    ],
)
def test_keys_pod_stats_does_not_implement_refuse_to_start_in_one_line(tmp_path, content, phrase):
    (tmp_path / "web.yml").write_text(content)
    result = subprocess.run(
        [POD_STATS, "serve", "--web.config.file", str(tmp_path / "web.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78, result.stderr
    assert result.stderr.count("\n") == 1 and phrase in result.stderr and "not supported" in result.stderr


@pytest.mark.parametrize(
    "content, phrase",
    [
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth: NoClientCert\n", "client_auth"),
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: Sometimes\n", "Sometimes"),
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_ca_file: z\n", "client_auth_type"),
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  min_version: TLS9\n", "TLS9"),
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  min_version: TLS13\n  max_version: TLS12\n", "above"),
        ("tls_server_config:\n  cert_file: x\n  key_file: y\n  cipher_suites: [RC4]\n", "RC4"),
        (
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: VerifyClientCertIfGiven\n"
            "  client_allowed_sans: [a]\n",
            "RequireAndVerifyClientCert",
        ),
        ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n", "cert"),
        ("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n", "TLS"),
        ("http_server_config:\n  headers:\n    Server: nginx\n", "Server"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
        ("basic_auth_users:\n  prometheus: plaintext\n", "bcrypt"),
        ("tls_config:\n  cert_file: x\n", "tls_config"),
    ],
)
def test_malformed_web_config_is_a_one_line_usage_error(tmp_path, content, phrase):
    (tmp_path / "web.yml").write_text(content)
    result = subprocess.run(
        [POD_STATS, "serve", "--web.config.file", str(tmp_path / "web.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and phrase in result.stderr and "Traceback" not in result.stderr


# -- basic auth ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashed():
    import bcrypt

    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()  # htpasswd -nBC 10's cost


def _status(port: int, credentials: bytes, path: str = "/metrics") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _timed(port: int, credentials: bytes) -> float:
    start = time.perf_counter()
    assert _status(port, credentials) == 401
    return time.perf_counter() - start


def test_unknown_users_and_wrong_passwords_take_the_same_time(tmp_path, hashed):
    with serving(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n") as (port, stats):
        unknown, wrong = [], []
        for attempt in range(6):  # distinct passwords: none is cached
            unknown.append(_timed(port, b"nobody:guess%d" % attempt))
            wrong.append(_timed(port, b"prometheus:guess%d" % attempt))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        assert 0.7 < ratio < 1.4, (unknown, wrong)
        assert statistics.median(wrong) > 0.02  # both ran a cost-10 bcrypt
        assert stats.auth.outcomes["bcrypt"] == 12


def test_verified_credentials_are_cached(tmp_path, hashed):
    with serving(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n") as (port, stats):
        for _ in range(20):
            assert _status(port, b"prometheus:s3cret") == 200
        assert _status(port, b"prometheus:s3cret", "/healthz") == 200  # open path: no check at all
        assert stats.auth.outcomes == {"cached": 19, "bcrypt": 1, "throttled": 0}


def test_a_burst_of_wrong_passwords_is_bounded_and_valid_scrapes_go_on(tmp_path, hashed):
    with serving(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n") as (port, stats):
        assert _status(port, b"prometheus:s3cret") == 200
        statuses, latencies = [], []

        def guess(n: int) -> None:
            statuses.append(_status(port, b"prometheus:guess-%d" % n))

        cpu_before = time.process_time()
        burst = [threading.Thread(target=guess, args=(n,)) for n in range(60)]
        for thread in burst:
            thread.start()
        for _ in range(5):  # a cached valid scrape is not queued behind bcrypt
            start = time.perf_counter()
            assert _status(port, b"prometheus:s3cret") == 200
            latencies.append(time.perf_counter() - start)
        for thread in burst:
            thread.join()
        cpu = time.process_time() - cpu_before
        outcomes = stats.auth.outcomes
        assert sorted(set(statuses)) == [401, 429] and statuses.count(401) == outcomes["bcrypt"] - 1
        assert outcomes["throttled"] == statuses.count(429) > 0 and outcomes["bcrypt"] < 30
        assert max(latencies) < 1.0, latencies
        print(
            f"60 wrong passwords at once: {outcomes['bcrypt'] - 1} bcrypt runs, {outcomes['throttled']} "
            f"answered 429, {cpu:.2f} CPU-s in this process; valid scrapes at most {max(latencies) * 1000:.0f} ms"
        )


def test_responses_nobody_reads_are_bounded_in_memory(tmp_path):
    """A client that asks and never reads holds its unread response; all of them together stay
    under the budget: the slowest readers are closed."""
    body = os.urandom(8 << 20)  # more than the kernel buffers for one socket

    def big(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]

    stats = HttpStats()
    server = start_http(
        f"127.0.0.1:{free_port()}", big, WebConfig(), stats, Limits(max_buffered_bytes=8 << 20, write_timeout=60)
    )
    clients = []
    try:
        for _ in range(16):  # 128 MiB asked for
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(server.server_address)
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        deadline = time.monotonic() + 10
        while stats.responses.get("200", 0) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        buffered = sum(c.transport.get_write_buffer_size() for c in list(server._connections) if c.transport)
        assert stats.responses["200"] == 16 and buffered <= 8 << 20 and stats.dropped["evicted"] > 0, (
            buffered,
            stats.dropped,
        )
    finally:
        for client in clients:
            client.close()
        server.shutdown()
