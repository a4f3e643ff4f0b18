"""Application services (spec: Application Service API): registrations, as_token
authentication, transactions pushed to services, and queries to them.

Modules: ``registration`` (files, namespaces), ``auth`` (identity assertion),
``api`` (HTTP calls to services), ``interest`` (which events a service gets),
``sender`` (ordered, retried transactions), ``queries`` (user/alias/third-party
queries, ping), ``area`` (wiring for the master).
"""
