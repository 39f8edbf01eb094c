#!/usr/bin/env python3
"""Sends one UDP datagram of SIZE bytes to ADDRESS PORT and waits up to TIMEOUT seconds for a
reply from there. Prints one line: "reply N" (its size) or "no reply".
"""
import socket
import sys

address, port, size, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.connect((address, port))  # replies from elsewhere are not this exchange's
sock.settimeout(timeout)
sock.send(bytes(i % 251 for i in range(size)))
try:
    print(f"reply {len(sock.recv(65535))}")
except (socket.timeout, ConnectionRefusedError):
    print("no reply")
