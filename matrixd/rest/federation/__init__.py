"""Servlets of the federation API (``/_matrix/federation``), authenticated with X-Matrix.

They subclass ``matrixd.federation.transport.server.BaseFederationServlet``;
the logic is in ``matrixd.federation`` (``read_handler``, ``public_rooms``).
"""
