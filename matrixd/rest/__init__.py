"""Servlets: parse, authenticate and validate a request, call a handler, format the reply.

Servlets subclass ``matrixd.http.server.RestServlet``, take their dependencies
(an ``matrixd.http.auth.Auth``, handlers, config) in the constructor and hold no
logic of their own. Subpackages: ``client/``, ``federation/``, ``media/``,
``admin/``, ``key/``. ``matrixd/app/`` instantiates them and registers them on
each listener's ``JsonResource``.
"""
