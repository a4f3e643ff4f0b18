"""The key server API (``/_matrix/key/v2``): our keys, and other servers' keys as a notary."""
