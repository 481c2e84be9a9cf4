#!/usr/bin/env python3
"""A JSON-RPC client in the manner of SPDK's scripts/rpc.py, written for the
tests: each request is sent as json.dumps(request, indent=2) with no
delimiter after it, and replies are read by incremental decoding of
whatever has arrived (json.JSONDecoder.raw_decode), so neither side relies
on newlines.

    rpc-py-style-client.py HOST PORT REQUESTS_JSON

REQUESTS_JSON is a JSON array of requests. They are all sent, in one write
or byte by byte with --trickle, and one reply per request that has an id is
read. Each reply is printed on its own line as compact JSON.
"""
import json
import socket
import sys


def main() -> int:
    host, port, requests_json = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    trickle = "--trickle" in sys.argv[4:]
    requests = json.loads(requests_json)
    expected = sum(1 for r in requests if "id" in r)
    sock = socket.create_connection((host, port), timeout=10)
    payload = "".join(json.dumps(r, indent=2) for r in requests).encode("utf-8")
    if trickle:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(payload)):
            sock.sendall(payload[i:i + 1])
    else:
        sock.sendall(payload)
    decoder = json.JSONDecoder()
    buffered = ""
    received = 0
    while received < expected:
        chunk = sock.recv(65536)
        if not chunk:
            print("connection closed early", file=sys.stderr)
            return 1
        buffered += chunk.decode("utf-8")
        while True:
            buffered = buffered.lstrip()
            if not buffered:
                break
            try:
                reply, end = decoder.raw_decode(buffered)
            except json.JSONDecodeError:
                break  # not all of it yet
            buffered = buffered[end:]
            print(json.dumps(reply, separators=(",", ":")))
            received += 1
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
