"""Outbound federation: per-destination queues, transactions, retries and catch-up.

``FederationSenderService`` (``service.py``) reads the events, device_lists and
to_device streams and feeds one ``DestinationQueue`` (``destination.py``) per
server; durable EDU sources live in ``durable_edus.py``, the retry schedule in
``backoff.py``.
"""
