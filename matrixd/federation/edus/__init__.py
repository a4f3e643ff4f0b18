"""Inbound EDUs: ``EduRegistry`` routes each EDU of a transaction to its handler by type."""
