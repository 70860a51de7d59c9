"""Test helper (not shipped): a slowloris and a scrape flood against one HTTP port, for a while.

    slowloris.py HOST PORT slowloris CONNECTIONS DRIP_SECONDS DURATION
    slowloris.py HOST PORT flood THREADS DURATION

Prints one JSON line of what it did. The slowloris holds CONNECTIONS sockets, each sending one
byte of an endless request head every DRIP_SECONDS, and reconnects a socket the server closed
(as slowloris tools do, once per round).
"""

import errno
import json
import socket
import sys
import threading
import time
import urllib.request

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10000))


def slowloris(host: str, port: int, connections: int, drip: float, duration: float) -> dict:
    done = {"connects": 0, "closed_by_server": 0, "bytes": 0}

    def connect() -> list:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        done["connects"] += 1
        return [sock, 0]

    held = [connect() for _ in range(connections)]
    stop = time.monotonic() + duration
    while time.monotonic() < stop:
        started = time.monotonic()
        for entry in held:
            sock, offset = entry
            try:
                if sock.recv(4096, socket.MSG_DONTWAIT) is not None:  # b"" (closed) or a 408: gone
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            except OSError as error:
                if error.errno not in (errno.ENOTCONN, errno.EAGAIN):
                    sock.close()
                    done["closed_by_server"] += 1
                    entry[:] = connect()
                    continue
            try:
                if sock.send(HEAD[offset : offset + 1]):
                    entry[1] += 1
                    done["bytes"] += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as error:
                if error.errno != errno.ENOTCONN:  # still connecting: next round
                    sock.close()
                    done["closed_by_server"] += 1
                    entry[:] = connect()
        time.sleep(max(0.0, started + drip - time.monotonic()))
    return done


def flood(host: str, port: int, threads: int, duration: float) -> dict:
    done = {"scrapes": 0, "errors": 0}
    stop = time.monotonic() + duration

    def scrape() -> None:
        while time.monotonic() < stop:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
                    response.read()
                done["scrapes"] += 1
            except OSError:
                done["errors"] += 1

    workers = [threading.Thread(target=scrape) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done


if __name__ == "__main__":
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    numbers = [float(arg) for arg in sys.argv[4:]]
    if mode == "slowloris":
        result = slowloris(host, port, int(numbers[0]), numbers[1], numbers[2])
    else:
        result = flood(host, port, int(numbers[0]), numbers[1])
    print(json.dumps(result))
