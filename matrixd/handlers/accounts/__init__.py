"""Accounts: registration, login, sessions and tokens, user-interactive auth,
devices, passwords, deactivation, profiles and the user directory."""
