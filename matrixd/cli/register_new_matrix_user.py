"""``register_new_matrix_user``: register a user on a matrixd (or Synapse) server with the
registration shared secret.

Uses the shared-secret admin API (``/_synapse/admin/v1/register``): fetch a
nonce, then POST the account with an HMAC-SHA1 over
``nonce NUL username NUL password NUL admin|notadmin [NUL user_type]`` keyed
with ``registration_shared_secret``.  Imports nothing of matrixd and needs only
the standard library and PyYAML (for ``-c``), so this file also runs on its own
(``python register_new_matrix_user.py``) on a machine without matrixd.

Installed as the ``register_new_matrixd_user`` console command (Synapse installs
``register_new_matrix_user``; the protocol is the same, so either works against
either server); ``scripts/register_new_matrix_user`` runs it from a checkout.

Examples::

    register_new_matrix_user -c homeserver.yaml -u alice -a
    register_new_matrix_user -k "$SECRET" -u bot -p hunter2 -t bot http://localhost:8008
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request
from typing import Any, Optional

DEFAULT_SERVER_URL = "http://localhost:8008"
USER_TYPES = ("bot", "support")


class RegistrationError(Exception):
    """The server refused, or could not be reached; the message says why."""


def compute_mac(secret: str, nonce: str, username: str, password: str, admin: bool,
                user_type: Optional[str] = None) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    mac.update(b"\x00".join(p.encode("utf-8") for p in parts))
    return mac.hexdigest()


def _call(method: str, url: str, body: Optional[dict[str, Any]] = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (operator-given URL)
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read().decode("utf-8"))
            detail = f"{err.get('errcode', '')}: {err.get('error', '')}"
        except (ValueError, UnicodeDecodeError):
            detail = e.reason
        raise RegistrationError(f"{method} {url} failed with HTTP {e.code} ({detail})") from None
    except urllib.error.URLError as e:
        raise RegistrationError(f"cannot reach {url}: {e.reason}") from None


def register(server_url: str, secret: str, username: str, password: str, admin: bool = False,
             user_type: Optional[str] = None, displayname: Optional[str] = None) -> dict[str, Any]:
    """Register the user; returns the server's answer (user_id, access_token, device_id)."""
    url = server_url.rstrip("/") + "/_synapse/admin/v1/register"
    nonce = _call("GET", url)["nonce"]
    body: dict[str, Any] = {
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": admin,
        "mac": compute_mac(secret, nonce, username, password, admin, user_type),
    }
    if user_type is not None:
        body["user_type"] = user_type
    if displayname is not None:
        body["displayname"] = displayname
    result: dict[str, Any] = _call("POST", url, body)
    return result


def _read_config(path: str) -> dict[str, Any]:
    import yaml  # only needed with -c

    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except OSError as e:
        raise RegistrationError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RegistrationError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise RegistrationError(f"{path} is not a YAML mapping")
    return config


def _url_from_config(config: dict[str, Any]) -> Optional[str]:
    """A URL for the first listener that serves the client API, if the config has one."""
    for listener in config.get("listeners") or []:
        if not isinstance(listener, dict) or listener.get("type") != "http":
            continue
        names = {n for r in listener.get("resources") or [] for n in (r.get("names") or [])}
        if "client" not in names:
            continue
        scheme = "https" if listener.get("tls") else "http"
        address = (listener.get("bind_addresses") or ["127.0.0.1"])[0]
        if address in ("0.0.0.0", "::"):
            address = "localhost"
        elif ":" in address:
            address = f"[{address}]"
        return f"{scheme}://{address}:{listener.get('port')}"
    return None


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Register a new user on a matrixd server "
                                                 "with the registration shared secret.")
    parser.add_argument("-u", "--user", help="Local part of the new user (asked for if omitted).")
    parser.add_argument("-p", "--password", help="New password (asked for if omitted).")
    parser.add_argument("-t", "--user_type", choices=USER_TYPES, help="Type of account, if not a normal user.")
    parser.add_argument("--displayname", help="Display name (defaults to the user name).")
    admin = parser.add_mutually_exclusive_group()
    admin.add_argument("-a", "--admin", action="store_true", default=None, help="Make the user a server admin.")
    admin.add_argument("--no-admin", dest="admin", action="store_false", help="Do not make the user an admin.")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("-c", "--config", help="homeserver.yaml holding registration_shared_secret.")
    secret.add_argument("-k", "--shared-secret", help="The registration shared secret.")
    parser.add_argument("server_url", nargs="?", help=f"Server base URL (default: from -c, else {DEFAULT_SERVER_URL}).")
    args = parser.parse_args(argv)

    try:
        server_url = args.server_url
        if args.config:
            config = _read_config(args.config)
            shared_secret = config.get("registration_shared_secret")
            if not isinstance(shared_secret, str) or not shared_secret:
                raise RegistrationError(f"{args.config} has no registration_shared_secret")
            server_url = server_url or _url_from_config(config)
        else:
            shared_secret = args.shared_secret
        server_url = server_url or DEFAULT_SERVER_URL

        user = args.user or input("New user localpart: ").strip()
        if not user:
            raise RegistrationError("a user name is required")
        password = args.password
        if password is None:
            password = getpass.getpass("Password: ")
            if not password:
                raise RegistrationError("a password is required")
            if getpass.getpass("Confirm password: ") != password:
                raise RegistrationError("passwords do not match")
        is_admin = args.admin
        if is_admin is None:
            is_admin = input("Make admin [no]: ").strip().lower() in ("y", "yes", "true")

        result = register(server_url, shared_secret, user, password, is_admin, args.user_type, args.displayname)
    except RegistrationError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("", file=sys.stderr)
        return 1
    print(f"Success! Registered {result.get('user_id')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
