"""Process entry points: the master (``homeserver``) and the workers.

Importing this package keeps Twisted's HTTP/2 channel out of the process. Our
listeners never offer HTTP/2 (no TLS context sets ALPN ``h2``), but
``twisted.web.http`` imports the channel, and with it the h2, hpack and
hyperframe packages, whenever h2 is installed (matrix-nio brings it): about
1.2 MiB per process for code that never runs.
"""

import sys

if "twisted.web.http" not in sys.modules:
    # A None entry makes the import fail, so Twisted sets H2_ENABLED = False.
    sys.modules.setdefault("twisted.web._http2", None)  # type: ignore[arg-type]
