#!/usr/bin/env python3
"""An FTP server for the agent's firmware download and log upload tests, built on the PyPI
package pyftpdlib (not written by us): one user with full rights on --root, passive mode on
127.0.0.1, an ephemeral port written to --port-file, and a JSON-lines --log of every command
the client sent with the server's reply code.

  ftpserver.py --root DIR --user U --password P --port-file F [--log F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="the user's home directory (read and write)")
    p.add_argument("--user", default="ocpp")
    p.add_argument("--password", default="secret")
    p.add_argument("--port-file", required=True, help="the listening port is written here, atomically")
    p.add_argument("--log", help="append one JSON line per client command")
    args = p.parse_args()

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, os.path.abspath(args.root), perm="elradfmwMT")
    log_lock = threading.Lock()

    class Handler(FTPHandler):
        def log_cmd(self, cmd, arg, respcode, respstr):  # noqa: D401 (pyftpdlib hook)
            if args.log:
                line = json.dumps({
                    "t": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                    "cmd": cmd,
                    # never the password
                    "arg": "***" if cmd == "PASS" else arg,
                    "code": respcode,
                })
                with log_lock, open(args.log, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

    Handler.authorizer = authorizer
    Handler.masquerade_address = None
    Handler.passive_ports = None
    # Log every command through log_cmd (pyftpdlib calls it only for these by default).
    Handler.log_cmds_list = [
        "USER", "PASS", "TYPE", "PASV", "EPSV", "SIZE", "REST", "RETR", "STOR", "APPE", "CWD",
        "QUIT", "MDTM", "FEAT", "OPTS", "PWD", "SYST",
    ]
    server = FTPServer(("127.0.0.1", 0), Handler)
    port = server.socket.getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)

    def stop(*_):
        server.close_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    import logging
    logging.basicConfig(level=logging.WARNING)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
