"""HTTP for federation: the outbound client and agent, and inbound authentication."""
