#!/usr/bin/env python3
"""GETs blobs over one plain keep-alive socket into a 1 MiB buffer and discards them.

usage: getraw.py HOST PORT PATH...   prints the bytes of body received

curl reads a response body 16 KiB at a time, which on a 2-core machine makes the client the
bound of a loopback download; this reader costs little more than the kernel's copy, so the
figure it gives is the server's. It checks the status and that exactly Content-Length bytes
arrive, and does not hash (the curl row and skopeo pull verify content).
"""
import socket
import sys


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("getraw: connection closed before the response headers")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    if len(status) < 2 or status[1] != "200":
        sys.exit(f"getraw: {lines[0]}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        sys.exit("getraw: response without Content-Length")
    return length, rest


def main():
    host, port, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sock = socket.create_connection((host, port))
    view = memoryview(bytearray(1 << 20))
    total = 0
    for path in paths:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        length, rest = read_head(sock, bytearray())
        if len(rest) > length:
            sys.exit("getraw: more bytes than Content-Length")
        left = length - len(rest)
        while left > 0:
            n = sock.recv_into(view, min(left, len(view)))
            if n == 0:
                sys.exit(f"getraw: {path}: connection closed {left} bytes short")
            left -= n
        total += length
    sock.close()
    print(total)


if __name__ == "__main__":
    main()
