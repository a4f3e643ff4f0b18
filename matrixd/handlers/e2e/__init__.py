"""End-to-end encryption support of the client-server API: device and one-time keys,
cross-signing, device list tracking, send-to-device messaging and key backups."""
