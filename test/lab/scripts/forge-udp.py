#!/usr/bin/env python3
"""Sends one UDP datagram with a forged source address and port, through a raw socket.

Reads a JSON object from stdin: {"to": {"address", "port"}, "from": {"address", "port"},
"payload": base64}. IPv4 uses IPPROTO_RAW (header included); IPv6 uses IPPROTO_RAW too,
which on Linux also means the IPv6 header is supplied by us. Prints one JSON line.
"""
import base64
import ipaddress
import json
import socket
import struct
import sys


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_segment(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, pseudo_prefix: bytes) -> bytes:
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    value = checksum(pseudo_prefix + header + payload)
    return struct.pack("!HHHH", sport, dport, length, value or 0xFFFF) + payload


def main() -> None:
    request = json.load(sys.stdin)
    src = ipaddress.ip_address(request["from"]["address"])
    dst = ipaddress.ip_address(request["to"]["address"])
    sport = int(request["from"]["port"])
    dport = int(request["to"]["port"])
    payload = base64.b64decode(request["payload"])
    if src.version != dst.version:
        raise SystemExit("from and to must be the same address family")
    if src.version == 4:
        length = 8 + len(payload)
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
        segment = udp_segment(src.packed, dst.packed, sport, dport, payload, pseudo)
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0x5A5A, 0x4000, 64,
                             socket.IPPROTO_UDP, 0, src.packed, dst.packed)
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sent = sock.sendto(header + segment, (str(dst), 0))
    else:
        length = 8 + len(payload)
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", length, socket.IPPROTO_UDP)
        segment = udp_segment(src.packed, dst.packed, sport, dport, payload, pseudo)
        header = struct.pack("!IHBB16s16s", 6 << 28, len(segment), socket.IPPROTO_UDP, 64, src.packed, dst.packed)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sent = sock.sendto(header + segment, (str(dst), 0))
    sock.close()
    print(json.dumps({"sent": sent}))


main()
