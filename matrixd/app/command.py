"""The ``matrixd`` console command.

It prepares the process (:func:`matrixd.app.optimise.prepare_server_process`:
restart under ``-OO``, hide pyOpenSSL) before anything heavy is imported, then
runs :func:`matrixd.app.homeserver.main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    if "--generate-config" not in sys.argv[1:]:
        from matrixd.app.optimise import prepare_server_process

        prepare_server_process()
    from matrixd.app.homeserver import main as homeserver_main

    homeserver_main()
