"""Federation: talking to other homeservers.

* ``transport.client.MatrixFederationClient``: signed outbound JSON requests
  (``transport.agent`` connects them: ``discovery``, ``well_known``, ``tls``,
  ``ip_filter``).
* ``transport.server``: X-Matrix authentication of inbound requests and
  ``BaseFederationServlet``; ``acl``: server ACLs.
* ``read_handler``, ``visibility``: what other servers may read of our rooms.
* ``public_rooms``: other servers' room directories.
* ``area.build_federation_area``: the wiring of all of it for one process.

Keys, the keyring and the notary are in ``matrixd.crypto``.
"""
