#!/usr/bin/env python3
"""Local HTTP/HTTPS file server for end-to-end tests of firmware download and log upload.

Standard library only (Python 3.11+). GET/HEAD serve files below --root, with
byte ranges (206/416); PUT/POST save uploads into --upload-dir. Faults can be
injected: --fail-first K (503s), --drop-after N (connection closed mid-body),
--stall-after N (connection kept open, silent, mid-body). One JSON line per
request goes to --log.

    python3 tests/csms/fileserver.py --root DIR --port 0 --port-file /tmp/p --log /tmp/fs.jsonl
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import email.utils
import http.server
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
from typing import Any

CHUNK = 64 * 1024
STALL_SECONDS = 3600


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sanitize(name: str) -> str:
    """A safe file name from the last segment of a URL path (or a multipart filename)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "upload"


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(first, last) for a single satisfiable range, "unsatisfiable", or None to ignore the header
    (malformed or multiple ranges: RFC 9110 allows serving the whole representation)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size > 0 else "unsatisfiable"
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def parse_multipart(body: bytes, boundary: bytes) -> tuple[bytes, str] | None:
    """(content, filename) of the first part with a filename (else of the first part, with filename
    ""), or None if malformed."""
    delim = b"--" + boundary
    parts: list[tuple[bytes, bytes]] = []
    pos = body.find(delim)
    if pos == -1 or (pos > 0 and body[pos - 2:pos] != b"\r\n"):
        return None
    while True:
        start = pos + len(delim)
        if body[start:start + 2] == b"--":
            break  # close delimiter
        eol = body.find(b"\r\n", start)  # skip transport padding
        if eol == -1:
            return None
        head_start = eol + 2
        if body[head_start:head_start + 2] == b"\r\n":
            headers, content_start = b"", head_start + 2
        else:
            head_end = body.find(b"\r\n\r\n", head_start)
            if head_end == -1:
                return None
            headers, content_start = body[head_start:head_end], head_end + 4
        nxt = body.find(b"\r\n" + delim, content_start)
        if nxt == -1:
            return None
        parts.append((headers, body[content_start:nxt]))
        pos = nxt + 2
    if not parts:
        return None
    for headers, content in parts:
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() != b"content-disposition":
                continue
            m = re.search(rb'(?:^|;)\s*filename\s*=\s*(?:"([^"]*)"|([^;\s]*))', value, re.I)
            if m:
                return content, (m.group(1) or m.group(2) or b"").decode("utf-8", "replace")
    return parts[0][1], ""


def multipart_boundary(content_type: str) -> bytes | None:
    mtype, _, params = content_type.partition(";")
    if mtype.strip().lower() != "multipart/form-data":
        return None
    m = re.search(r'(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', params, re.I)
    if not m:
        return None
    return (m.group(1) or m.group(2)).encode("latin-1")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ocpp-test-fileserver/1"
    timeout = 120  # socket timeout for reads and writes (not used while stalling)
    server: "FileServer"

    # ----- helpers

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def record(self, status: int, nbytes: int, dropped: bool = False, stalled: bool = False) -> None:
        self.server.log_record({
            "t": now(),
            "method": self.command,
            "path": self.path,
            "range": self.headers.get("Range"),
            "status": status,
            "bytes": nbytes,
            "dropped": dropped,
            "stalled": stalled,
        })

    def start(self, status: int, length: int, headers: dict[str, str] | None = None,
              content_type: str = "application/octet-stream") -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()

    def simple(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        written = 0
        try:
            self.start(status, len(body), headers, "text/plain; charset=utf-8")
            if self.command != "HEAD":
                self.wfile.write(body)
                written = len(body)
        except OSError:
            pass
        self.record(status, written)

    def resolve(self) -> str | None:
        """The regular file below the root named by the request path, or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if "\0" in path:
            return None
        root = self.server.root
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
            return None
        return full

    def drop(self) -> None:
        """Closes the connection without a TLS close_notify or the rest of the body."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ----- GET / HEAD

    def do_HEAD(self) -> None:
        self.serve(head=True)

    def do_GET(self) -> None:
        if self.server.take_failure():
            self.simple(503, "Service Unavailable (--fail-first)\n")
            return
        self.serve(head=False)

    def serve(self, head: bool) -> None:
        full = self.resolve()
        if full is None:
            self.simple(404, "Not Found\n")
            return
        try:
            f = open(full, "rb")
        except OSError:
            self.simple(404, "Not Found\n")
            return
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = f'"{st.st_mtime_ns:x}-{size:x}"'
            headers = {
                "Accept-Ranges": "bytes",
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            }
            rng = self.headers.get("Range")
            # RFC 9110 13.1.5: a Range with an If-Range that no longer matches gets the whole file.
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range.strip() not in (etag, headers["Last-Modified"]):
                rng = None
            parsed = parse_range(rng, size) if rng is not None else None
            if parsed == "unsatisfiable":
                self.simple(416, "Range Not Satisfiable\n", {**headers, "Content-Range": f"bytes */{size}"})
                return
            if isinstance(parsed, tuple):
                first, last = parsed
                status = 206
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            else:
                first, last, status = 0, size - 1, 200
            length = last - first + 1
            if head:
                self.start(status, length, headers)
                self.record(status, 0)
                return
            # Faults apply to the first served GET of each path.
            limit, mode = None, None
            if self.server.first_get(urllib.parse.urlsplit(self.path).path):
                if self.server.drop_after is not None and self.server.drop_after < length:
                    limit, mode = self.server.drop_after, "drop"
                elif self.server.stall_after is not None and self.server.stall_after < length:
                    limit, mode = self.server.stall_after, "stall"
            written = 0
            try:
                self.start(status, length, headers)
                f.seek(first)
                todo = length if limit is None else limit
                while todo > 0:
                    data = f.read(min(CHUNK, todo))
                    if not data:
                        break
                    self.wfile.write(data)
                    written += len(data)
                    todo -= len(data)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                self.record(status, written)
                return
            if mode == "drop":
                self.drop()
                self.record(status, written, dropped=True)
            elif mode == "stall":
                self.record(status, written, stalled=True)
                self.server.stopping.wait(STALL_SECONDS)
                self.drop()
            else:
                self.record(status, written)

    # ----- PUT / POST

    def read_body(self) -> bytes | None:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return None
                try:
                    n = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if n == 0:
                    while True:  # trailers
                        line = self.rfile.readline(65537)
                        if line in (b"\r\n", b"\n", b""):
                            return bytes(out)
                data = self.rfile.read(n)
                if len(data) != n:
                    return None
                out += data
                self.rfile.readline(3)  # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            return None
        data = self.rfile.read(n) if n > 0 else b""
        return data if len(data) == n else None

    def upload(self, ok_status: int) -> None:
        try:
            body = self.read_body()
        except OSError:
            body = None
        if body is None:
            self.simple(400, "Bad Request: incomplete or malformed body\n")
            return
        nbytes = len(body)
        if self.server.basic_auth is not None:
            expected = "Basic " + base64.b64encode(self.server.basic_auth.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.simple_upload(401, "Unauthorized\n", nbytes, {"WWW-Authenticate": 'Basic realm="upload"'})
                return
        if self.server.upload_status is not None:
            self.simple_upload(self.server.upload_status, "(--upload-status)\n", nbytes)
            return
        if self.command == "POST" and self.server.no_post:
            self.simple_upload(405, "Method Not Allowed (--no-post)\n", nbytes, {"Allow": "GET, HEAD, PUT"})
            return
        if self.server.upload_dir is None:
            self.simple_upload(405, "Method Not Allowed: no --upload-dir\n", nbytes, {"Allow": "GET, HEAD"})
            return
        content = body
        part_name = None
        if self.command == "POST":
            boundary = multipart_boundary(self.headers.get("Content-Type", ""))
            if boundary is not None:
                parsed = parse_multipart(body, boundary)
                if parsed is None:
                    self.simple_upload(400, "Bad Request: malformed multipart body\n", nbytes)
                    return
                content, part_name = parsed
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        # A path ending in '/' names a directory: the file keeps the name the client gave.
        segment = "" if path.endswith("/") else path.rsplit("/", 1)[-1]
        name = sanitize(segment if segment else (part_name or ""))
        try:
            write_atomic(os.path.join(self.server.upload_dir, name), content)
        except OSError as e:
            self.simple_upload(500, f"cannot save: {e}\n", nbytes)
            return
        self.simple_upload(ok_status, f"saved {name} ({len(content)} bytes)\n", nbytes)

    def simple_upload(self, status: int, text: str, received: int, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        try:
            self.start(status, len(body), headers, "text/plain; charset=utf-8")
            self.wfile.write(body)
        except OSError:
            pass
        self.record(status, received)

    def do_PUT(self) -> None:
        self.upload(201)

    def do_POST(self) -> None:
        self.upload(200)


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], args: argparse.Namespace,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.root = os.path.realpath(args.root)
        self.upload_dir = os.path.abspath(args.upload_dir) if args.upload_dir else None
        self.upload_status = args.upload_status
        self.basic_auth = args.basic_auth
        self.no_post = args.no_post
        self.drop_after = args.drop_after
        self.stall_after = args.stall_after
        self.verbose = args.verbose
        self.ssl_context = ssl_context
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.failures_left = args.fail_first
        self.served: set[str] = set()
        self.log_file = open(args.log, "a", encoding="utf-8") if args.log else None
        super().__init__(address, Handler)

    def take_failure(self) -> bool:
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return True
            return False

    def first_get(self, path: str) -> bool:
        with self.lock:
            if path in self.served:
                return False
            self.served.add(path)
            return True

    def log_record(self, rec: dict[str, Any]) -> None:
        if self.verbose:
            print(json.dumps(rec), file=sys.stderr, flush=True)
        if self.log_file is None:
            return
        with self.lock:
            self.log_file.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.log_file.flush()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # Runs in the per-connection thread: the TLS handshake must not block the accept loop.
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(Handler.timeout)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            if self.verbose:
                print(f"TLS handshake with {client_address} failed: {e}", file=sys.stderr, flush=True)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        if self.log_file is not None:
            self.log_file.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Local HTTP/HTTPS file server for firmware/log transfer tests.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port; 0 = ephemeral")
    p.add_argument("--port-file", help="write the actual port here (atomically) once listening")
    p.add_argument("--root", default=".", help="GET/HEAD serve regular files below this directory")
    p.add_argument("--upload-dir", help="PUT/POST save bodies here under the last path segment (else 405)")
    p.add_argument("--tls-cert", help="serve HTTPS (TLS 1.2+) with this PEM certificate chain")
    p.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    p.add_argument("--log", help="append one JSON line per request to this file")
    p.add_argument("--drop-after", type=int, metavar="N",
                   help="first GET of each path: close the connection after N body bytes")
    p.add_argument("--stall-after", type=int, metavar="N",
                   help=f"first GET of each path: send N body bytes, then go silent for {STALL_SECONDS} s")
    p.add_argument("--fail-first", type=int, default=0, metavar="K",
                   help="answer the first K GET requests (all paths) with 503")
    p.add_argument("--upload-status", type=int, metavar="CODE",
                   help="answer every PUT/POST with this HTTP status (nothing is saved)")
    p.add_argument("--basic-auth", metavar="USER:PASS",
                   help="PUT/POST need HTTP Basic auth with these credentials (else 401)")
    p.add_argument("--no-post", action="store_true", help="answer POST with 405 (PUT works)")
    p.add_argument("--verbose", action="store_true", help="log requests and errors on stderr")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    for opt in ("drop_after", "stall_after", "fail_first"):
        v = getattr(args, opt)
        if v is not None and v < 0:
            p.error(f"--{opt.replace('_', '-')} must be >= 0")
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root}: not a directory")
    if args.upload_dir:
        os.makedirs(args.upload_dir, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    server = FileServer((args.host, args.port), args, ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    port = server.server_address[1]
    if args.port_file:
        write_atomic(args.port_file, f"{port}\n".encode())
    if args.verbose:
        scheme = "https" if ctx else "http"
        print(f"serving {args.root} on {scheme}://{args.host}:{port}/", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    server.stopping.set()  # wakes stalled transfers
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
