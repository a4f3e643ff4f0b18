"""Room membership over federation: serving make/send join, leave, knock and invites; remote joins."""
