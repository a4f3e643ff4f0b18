"""TLS for outbound federation: certificate checks and SNI as the server discovery rules say.

The certificate must be valid for the name server discovery settled on (the
server name, the delegated name, or an IP literal), which is also sent as
SNI unless it is an IP address (IP literals never go in SNI). Verification
is on by default; ``federation_verify_certificates: false`` turns it off
everywhere (tests, closed networks) and
``federation_certificate_verification_whitelist`` for matching names only.
Unverified connections still send SNI, so virtual hosting keeps working.
The TLS itself is :mod:`matrixd.http.tls` (Python's ``ssl``).
"""

from __future__ import annotations

import fnmatch
import ssl
from typing import Optional, Sequence

from twisted.internet.interfaces import IStreamClientEndpoint

from matrixd.federation.discovery import is_ip_literal
from matrixd.http.tls import TLSClientEndpoint, client_context


class FederationTLSPolicy:
    """Wraps connections to a server in TLS for the name its certificate must carry.

    Args:
        verify: check certificates (against ``ca_pem``, default the platform's CA store).
        unverified_name_globs: names (glob patterns, case-insensitive) whose
            certificates are never checked.
        ca_pem: the CAs (PEM) to trust instead of the platform's (tests).
    """

    def __init__(
        self,
        verify: bool = True,
        unverified_name_globs: Sequence[str] = (),
        ca_pem: Optional[str] = None,
    ) -> None:
        self._verify = verify
        self._globs = tuple(g.lower() for g in unverified_name_globs)
        self._ca_pem = ca_pem
        self._verifying: Optional[ssl.SSLContext] = None
        self._unverified: Optional[ssl.SSLContext] = None

    def verifies(self, tls_name: str) -> bool:
        name = tls_name.lower()
        return self._verify and not any(fnmatch.fnmatchcase(name, g) for g in self._globs)

    def wrap(self, tls_name: str, tcp: IStreamClientEndpoint) -> IStreamClientEndpoint:
        """``tcp`` with TLS to a server whose certificate must name ``tls_name``."""
        if self.verifies(tls_name):
            if self._verifying is None:
                self._verifying = client_context(verify=True, ca_pem=self._ca_pem)
            return TLSClientEndpoint(tcp, self._verifying, tls_name)
        if self._unverified is None:
            self._unverified = client_context(verify=False)
        return TLSClientEndpoint(tcp, self._unverified, None if is_ip_literal(tls_name) else tls_name)
