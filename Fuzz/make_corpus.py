#!/usr/bin/env python3
"""Writes the seed corpora of the C fuzz targets: Fuzz/corpus/frame and Fuzz/corpus/node.

Frames as cc_frame.h lays them out; node inputs as Fuzz/C/fuzz_node.c reads them (own
broadcasts, bytes per read, then slot 0's stream: HELLO, AUTH with a zero tag that the
harness signs, then what follows). Run it from anywhere; it replaces the files it names
and leaves others (inputs the fuzzer found and someone kept) alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO, AUTH, MESSAGE, ACK, HEARTBEAT, MEMBERS = 1, 2, 3, 4, 5, 6
SPARSE = 1


def frame(type_, sender=0, width=2, level=0, flags=None, kind=0, seq=0, clock=None, sparse=None,
          payload=b"", version=1, entries=None, length=None):
    """A frame; control frames as nodes send them: sparse, no entries, the sender's width."""
    if clock is not None:
        body, n, f = b"".join(struct.pack("<Q", v) for v in clock), len(clock), 0
    elif sparse is not None:
        body, n, f = b"".join(struct.pack("<IQ", s, v) for s, v in sparse), len(sparse), SPARSE
    else:
        body, n, f = b"", 0, SPARSE
    flags = f if flags is None else flags
    entries = n if entries is None else entries
    rest = struct.pack("<BBBBIIIIQ", version, type_, level, flags, sender, width, entries, kind, seq) + body + payload
    return struct.pack("<I", len(rest) if length is None else length) + rest


def hello(sender=0, width=2, has=0, log_lo=1):
    return frame(HELLO, sender, width, payload=bytes(range(32)) + struct.pack("<QQ", has, log_lo))


def auth(seq=0):
    return frame(AUTH, seq=seq, payload=bytes(32))  # fuzz_node signs an AUTH with seq 0


def msg(seq, others=(0,), sender=0, level=1, kind=7, size=8):
    clock = list(others)
    clock.insert(sender, seq)
    payload = bytes((seq + i) & 0xFF for i in range(size))
    return frame(MESSAGE, sender, len(clock), level, kind=kind, seq=seq, clock=clock, payload=payload)


def members(*records, width=3):
    payload = b"".join(struct.pack("<IHB", s, port, len(h)) + h.encode() for s, h, port in records)
    return frame(MEMBERS, width=width, payload=payload)


FRAMES = {
    "hello": hello(),
    "auth": auth(),
    "message-width1": frame(MESSAGE, 0, 1, 1, seq=1, clock=[1], payload=b"hi"),
    "message-width3": msg(4, (2, 9), sender=1, level=4, size=40),
    "message-sparse": frame(MESSAGE, 1, 4, 2, seq=3, sparse=[(0, 5), (1, 3), (3, 1)], payload=b"sparse"),
    "ack": frame(ACK, seq=17),
    "heartbeat": frame(HEARTBEAT),
    "members": members((0, "127.0.0.1", 7000), (2, "::1", 7002)),
    "stream": hello() + auth() + msg(1) + msg(2, (1,)),
    "truncated": msg(1)[:-3],
    "bad-version": frame(HEARTBEAT, version=2),
    "bad-type": frame(7),
    "reserved-flag": frame(HEARTBEAT, flags=3),
    "level-zero-message": frame(MESSAGE, 0, 1, 0, seq=1, clock=[1]),
    "sender-past-width": frame(MESSAGE, 2, 2, 1, seq=1, clock=[1, 1]),
    "sparse-descending": frame(MESSAGE, 0, 4, 1, seq=1, sparse=[(2, 1), (0, 1)]),
    "sparse-past-width": frame(MESSAGE, 0, 2, 1, seq=1, sparse=[(0, 1), (5, 1)]),
    "dense-entries-mismatch": frame(MESSAGE, 0, 3, 1, seq=1, clock=[1, 0], entries=2),
    "length-short": frame(HEARTBEAT, length=10),
    "length-huge": frame(HEARTBEAT, length=0xFFFFFFF0),
    "empty": b"",
}


def node(stream, own=0, read=0):
    return bytes([own, read]) + stream


UP = hello() + auth()
NODE = {
    "handshake": node(UP),
    "in-order": node(UP + msg(1) + msg(2) + msg(3)),
    "out-of-order": node(UP + msg(2) + msg(3) + msg(1)),
    "duplicate": node(UP + msg(1) + msg(1) + msg(2)),
    "after-own": node(UP + frame(ACK, seq=2) + msg(1, (2,)) + msg(2, (2,)), own=2),
    "waits-for-own": node(UP + msg(1, (5,)) + msg(2, (1,)), own=1),
    "too-far-ahead": node(UP + msg(40)),
    "held-back-full": node(UP + b"".join(msg(s) for s in range(2, 14)) + msg(1)),
    "levels": node(UP + msg(2, level=4) + msg(3, level=2) + msg(1, level=1)),
    "acks": node(UP + frame(ACK, seq=1) + frame(HEARTBEAT) + frame(ACK, seq=3) + frame(ACK, seq=99), own=3),
    "resend-from-has": node(hello(has=2) + auth() + frame(ACK, seq=4), own=4),
    "skip-before": node(hello(log_lo=5) + auth() + msg(5) + msg(6)),
    "members-grow": node(UP + members((0, "127.0.0.1", 9), (1, "127.0.0.1", 9), (2, "127.0.0.1", 9))
                         + frame(MESSAGE, 0, 3, 1, seq=1, clock=[1, 0, 0], payload=b"three")),
    "message-wider": node(UP + frame(MESSAGE, 0, 5, 1, seq=1, clock=[1, 0, 0, 0, 0], payload=b"five")),
    "hello-wider": node(hello(width=4) + auth() + msg(1)),
    "hello-too-wide": node(hello(width=100) + auth()),
    "members-too-wide": node(UP + members((40, "127.0.0.1", 9), width=41)),
    "members-malformed": node(UP + frame(MEMBERS, payload=b"\x02\x00\x00\x00\x09\x00\x20abc")),
    "wrong-key": node(hello() + auth(seq=1) + msg(1)),
    "message-first": node(msg(1) + UP),
    "unknown-slot": node(hello(sender=5) + auth()),
    "sparse-message": node(UP + frame(MESSAGE, 0, 2, 1, seq=1, sparse=[(0, 1)])),
    "seq-mismatch": node(UP + frame(MESSAGE, 0, 2, 1, seq=2, clock=[1, 0])),
    "hello-twice": node(hello() + hello() + auth()),
    "auth-after-up": node(UP + auth() + msg(1)),
    "too-big": node(UP + msg(1, size=4096)),
    "one-byte-reads": node(UP + msg(1) + msg(2) + msg(3), read=1),
    "odd-reads": node(UP + b"".join(msg(s) for s in range(1, 21)), read=7),
    "large-payloads": node(UP + msg(1, size=480) + msg(3, size=300) + msg(2, size=500), read=200),
}


def write(folder, files):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("frame", FRAMES)
    write("node", NODE)
