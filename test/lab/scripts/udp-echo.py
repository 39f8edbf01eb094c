#!/usr/bin/env python3
"""A UDP echo server for the lab's web namespace: each datagram goes back whole, from the
address it was sent to (one socket per address and port, so the reply's source is that
address). Arguments: ADDRESS PORT pairs. Prints one "listening" line when every socket is bound.
"""
import selectors
import socket
import sys

args = sys.argv[1:]
if not args or len(args) % 2:
    sys.exit("usage: udp-echo.py ADDRESS PORT [ADDRESS PORT ...]")
selector = selectors.DefaultSelector()
for address, port in zip(args[::2], args[1::2]):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    # The zone's addresses are local through routes to lo, not assigned: bind them freely
    # (IP_FREEBIND / IPV6_FREEBIND; Python names neither).
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, 15, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, 78, 1)
    sock.bind((address, int(port)))
    selector.register(sock, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in selector.select():
        data, peer = key.fileobj.recvfrom(65535)
        print(f"received {len(data)} from {peer[0]} to port {key.fileobj.getsockname()[1]}", flush=True)
        key.fileobj.sendto(data, peer)
