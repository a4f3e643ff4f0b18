"""TLS for outbound federation: certificate checks and SNI as the server discovery rules say.

The certificate must be valid for the name server discovery settled on (the
server name, the delegated name, or an IP literal), which is also sent as
SNI unless it is an IP address (IP literals never go in SNI). Verification
is on by default; ``federation_verify_certificates: false`` turns it off
everywhere (tests, closed networks) and
``federation_certificate_verification_whitelist`` for matching names only.
Unverified connections still send SNI, so virtual hosting keeps working.
"""

from __future__ import annotations

import fnmatch
from typing import Optional, Sequence

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from matrixd.federation.discovery import is_ip_literal
from matrixd.storage.cache import LruCache


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientTLS:
    """TLS 1.2+ without certificate checks; SNI for DNS names only."""

    def __init__(self, context: SSL.Context, tls_name: str) -> None:
        self._context = context
        self._sni = None if is_ip_literal(tls_name) else tls_name.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        return connection


class FederationTLSPolicy:
    """Builds the TLS client side for a name.

    Args:
        verify: check certificates (against ``trust_root``, default the
            platform's CA store).
        unverified_name_globs: names (glob patterns, case-insensitive) whose
            certificates are never checked.
        trust_root: the CAs to trust instead of the platform's (tests).
    """

    def __init__(
        self,
        verify: bool = True,
        unverified_name_globs: Sequence[str] = (),
        trust_root: Optional[IOpenSSLTrustRoot] = None,
    ) -> None:
        self._verify = verify
        self._globs = tuple(g.lower() for g in unverified_name_globs)
        self._trust_root = trust_root
        self._creators: LruCache[str, IOpenSSLClientConnectionCreator] = LruCache("federation_tls_creators", 5000)
        self._unverified_context: Optional[SSL.Context] = None

    def verifies(self, tls_name: str) -> bool:
        name = tls_name.lower()
        return self._verify and not any(fnmatch.fnmatchcase(name, g) for g in self._globs)

    def creator_for(self, tls_name: str) -> IOpenSSLClientConnectionCreator:
        """The connection creator for a server whose certificate must name ``tls_name``."""
        cached = self._creators.get(tls_name)
        if cached is not None:
            return cached
        creator: IOpenSSLClientConnectionCreator
        if self.verifies(tls_name):
            creator = ssl.optionsForClientTLS(
                tls_name,
                trustRoot=self._trust_root,
                extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
            )
        else:
            if self._unverified_context is None:
                options = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
                self._unverified_context = options.getContext()
            creator = _UnverifiedClientTLS(self._unverified_context, tls_name)
        self._creators.set(tls_name, creator)
        return creator
