#!/usr/bin/env python3
"""guestfwd relay: qemu runs one per guest connection to 10.0.2.100:9000, with the guest's
stream on stdin/stdout; this joins it to 127.0.0.1:PORT (the CSMS on the host's loopback).
A refused connection closes the guest's at once, as a CSMS that is down would."""
import os
import select
import socket
import sys

try:
    peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
except OSError:
    sys.exit(0)
peer.settimeout(None)
inp, out = sys.stdin.fileno(), sys.stdout.fileno()
while True:
    ready, _, _ = select.select([inp, peer], [], [])
    if inp in ready:
        data = os.read(inp, 65536)
        if not data:
            peer.shutdown(socket.SHUT_WR)
            inp = -1
            break
        peer.sendall(data)
    if peer in ready:
        data = peer.recv(65536)
        if not data:
            break
        while data:
            data = data[os.write(out, data):]
# half-closed: drain the other direction until it ends too
try:
    while inp == -1:
        data = peer.recv(65536)
        if not data:
            break
        while data:
            data = data[os.write(out, data):]
except OSError:
    pass
