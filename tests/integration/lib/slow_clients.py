#!/usr/bin/env python3
# Slow HTTP clients for t_http.sh: keeps COUNT connections open to
# ADDR:PORT, spread round-robin over the given source addresses, for HOLD
# seconds. MODE "silent" connects and sends nothing; "trickle" sends a
# request one byte per second and never finishes it. A connection the
# server closes is opened again 0.5 s later, so the pressure lasts for the
# whole hold. Bounded: COUNT sockets at a time, at most 20 x COUNT
# connects, HOLD seconds. Prints one summary line at the end:
#   connects N established N closed_by_server N max_held_s X
# max_held_s: the longest any established connection stayed open before
# the server closed it (or the hold ended): what a server timeout bounds.
import argparse
import errno
import select
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--addr", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--src", required=True, help="comma-separated source addresses")
p.add_argument("--count", type=int, default=200)
p.add_argument("--mode", choices=("silent", "trickle"), default="silent")
p.add_argument("--hold", type=float, default=8.0)
p.add_argument("--ready-file", help="written once every first connect was tried")
a = p.parse_args()

srcs = a.src.split(",")
req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n"
MAX_CONNECTS = 20 * a.count


class Conn:
    def __init__(self, slot):
        self.slot = slot
        self.sock = None
        self.t0 = 0.0
        self.est = False  # handshake completed
        self.sent = 0
        self.reopen_at = 0.0


stats = {"connects": 0, "established": 0, "closed": 0, "max_held": 0.0}


def open_conn(c):
    if stats["connects"] >= MAX_CONNECTS:
        c.sock = None
        c.reopen_at = float("inf")
        return
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.bind((srcs[c.slot % len(srcs)], 0))
    except OSError as e:
        sys.exit("bind %s: %s" % (srcs[c.slot % len(srcs)], e))
    stats["connects"] += 1
    r = s.connect_ex((a.addr, a.port))
    if r not in (0, errno.EINPROGRESS):
        s.close()
        c.sock = None
        c.reopen_at = time.monotonic() + 0.5
        return
    c.sock, c.t0, c.est, c.sent = s, time.monotonic(), False, 0


def end_conn(c, by_server):
    now = time.monotonic()
    if c.est:
        stats["max_held"] = max(stats["max_held"], now - c.t0)
        if by_server:
            stats["closed"] += 1
    c.sock.close()
    c.sock = None
    c.reopen_at = now + 0.5


conns = [Conn(i) for i in range(min(a.count, 2000))]
for c in conns:
    open_conn(c)
if a.ready_file:
    open(a.ready_file, "w").write("%d\n" % sum(1 for c in conns if c.sock))

end = time.monotonic() + a.hold
next_byte = time.monotonic() + 1.0
while time.monotonic() < end:
    now = time.monotonic()
    for c in conns:
        if c.sock is None and now >= c.reopen_at:
            open_conn(c)
    live = [c for c in conns if c.sock is not None]
    if not live:
        time.sleep(0.1)
        continue
    pending = [c.sock for c in live if not c.est]
    rl, wl, _ = select.select([c.sock for c in live if c.est], pending, [], 0.1)
    for c in live:
        if c.sock in wl and not c.est:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                end_conn(c, False)
                continue
            c.est = True
            stats["established"] += 1
        if c.sock is not None and c.sock in rl:
            try:
                d = c.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                end_conn(c, True)
    if a.mode == "trickle" and time.monotonic() >= next_byte:
        next_byte += 1.0
        for c in conns:
            if c.sock is None or not c.est or c.sent >= len(req):
                continue
            try:
                c.sock.send(req[c.sent:c.sent + 1])
                c.sent += 1
            except BlockingIOError:
                pass
            except OSError:
                end_conn(c, True)

for c in conns:
    if c.sock is not None:
        end_conn(c, False)
print("connects %d established %d closed_by_server %d max_held_s %.1f"
      % (stats["connects"], stats["established"], stats["closed"],
         stats["max_held"]))
