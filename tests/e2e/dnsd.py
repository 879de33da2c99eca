"""A small DNS responder for the networking tests, run by them in a network
namespace of their own: answers A queries for the names it is given, NOERROR
with no answer for other types of those names, NXDOMAIN for every other name.
Prints "ready" once bound; logs each question to stderr.

    python3 dnsd.py ADDR NAME=IPV4 [NAME=IPV4 ...]
"""

import socket
import struct
import sys


def parse_question(msg):
    """(id, flags, qname, qtype, end of the question) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", msg[:6])
    if qd != 1 or flags & 0x8000:
        return None
    labels, i = [], 12
    while True:
        if i >= len(msg):
            return None
        n = msg[i]
        i += 1
        if n == 0:
            break
        if n > 63 or i + n > len(msg):
            return None
        labels.append(msg[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(msg):
        return None
    qtype, = struct.unpack(">H", msg[i:i + 2])
    return qid, flags, ".".join(labels), qtype, i + 4


def answer(msg, names):
    q = parse_question(msg)
    if not q:
        return None
    qid, flags, qname, qtype, end = q
    question = msg[12:end]
    known = qname in names
    rcode = 0 if known else 3
    answers = b""
    if known and qtype == 1:
        answers = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(names[qname])
    head = struct.pack(">HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 1,
                       1 if answers else 0, 0, 0)
    return head + question + answers


def main():
    addr = sys.argv[1]
    names = dict(a.lower().split("=", 1) for a in sys.argv[2:])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    print("ready", flush=True)
    while True:
        msg, peer = s.recvfrom(4096)
        q = parse_question(msg)
        if q:
            print(f"dnsd: {peer[0]} asks {q[2]} type {q[3]}", file=sys.stderr, flush=True)
        out = answer(msg, names)
        if out:
            s.sendto(out, peer)


if __name__ == "__main__":
    main()
