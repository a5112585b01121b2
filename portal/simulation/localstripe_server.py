"""Run localstripe (a fake Stripe API server) on 127.0.0.1 with fresh, in-memory state.

localstripe's own CLI listens on every interface (`::`) and loads/saves its whole store in /tmp/localstripe.pickle
on every write, so two test runs would share (and corrupt) each other's Stripe data. This wrapper binds 127.0.0.1
only, never reads or writes the pickle, and reports the port it got through a file:

    python -m portal.simulation.localstripe_server --port 0 --port-file var/localstripe.port

`manage.py simulate_year` starts it for its card customers (portal/simulation/cards.py) and waits until it answers;
the tests' `localstripe_server` fixture (tests/support/plugin.py) runs this same file as a script
(`python portal/simulation/localstripe_server.py ...`), so it imports nothing of the project.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources, server

    # Fresh state every start and nothing on disk: see the module docstring.
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    resources.store.clear()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(port))
        os.replace(tmp, args.port_file)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(f"localstripe listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    web.run_app(server.app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
