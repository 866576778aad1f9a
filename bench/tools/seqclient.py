#!/usr/bin/env python3
"""Send exactly N sequential GET requests over one keep-alive connection.

Usage: seqclient.py HOST PORT PATH N [AUTHORIZATION]
Used by `run.sh --callgrind`, where the server runs under valgrind and is ~50x
slower than the client, so a simple Python loop is never the bottleneck, and an
exact request count matters more than speed. Exits non-zero if any response is
not 200 (the instruction counts would then describe error paths).
"""
import http.client
import sys


def main() -> None:
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: seqclient.py HOST PORT PATH N [AUTHORIZATION]")
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if host != "127.0.0.1":
        sys.exit("seqclient: loopback only")
    headers = {"Authorization": sys.argv[5]} if len(sys.argv) == 6 else {}
    # Generous per-request timeout: valgrind is slow, but never unbounded.
    conn = http.client.HTTPConnection(host, port, timeout=60)
    bad = 0
    for _ in range(n):
        for attempt in (1, 2):
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle/limited keep-alive connection: reconnect once.
                conn.close()
                if attempt == 2:
                    raise
        if resp.status != 200:
            bad += 1
    conn.close()
    if bad:
        sys.exit(f"seqclient: {bad} of {n} responses were not 200")


if __name__ == "__main__":
    main()
