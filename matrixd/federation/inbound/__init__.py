"""Inbound federation: transactions (``/send``), PDU receipt checks, EDU routing."""
