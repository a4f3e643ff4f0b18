"""``matrixd --generate-config``: write a commented homeserver.yaml for a new server.

The generated file runs as it is for local development: SQLite, signing key and
media store under the data directory, client and federation APIs on
127.0.0.1:8008, open registration. Its comments say what to change for
production. An existing config file is never overwritten.
"""

from __future__ import annotations

import json
import os
import secrets
import string

import signedjson.key

from matrixd.api.errors import ConfigError
from matrixd.types import is_valid_server_name

_TEMPLATE = """\
# matrixd configuration for {server_name}
# Written by `matrixd --generate-config`. Key names follow Synapse's homeserver.yaml
# where the setting exists in both. Durations accept 500 (ms), 30s, 10m, 1h, 7d;
# sizes accept 1024, 512K, 50M.

## Server ##

# The domain part of user ids (@alice:{server_name}) and room aliases on this server.
# It cannot be changed once users exist.
server_name: {server_name_q}

# The URL clients use to reach this server; advertised by /.well-known/matrix/client.
# For production put a TLS reverse proxy in front and set this to its https:// URL.
public_baseurl: {public_baseurl_q}

# Answer /.well-known/matrix/server (federation delegation) from this server.
serve_server_wellknown: false

# The room version new rooms get (defaults to the newest stable version).
#default_room_version: "12"

# This server's ed25519 signing key (generated next to the database).
signing_key_path: {signing_key_path_q}

# Secrets for login tokens and forms; keep them private and unchanged.
macaroon_secret_key: {macaroon_secret_key_q}
form_secret: {form_secret_q}

## Listeners ##

listeners:
  # Client, federation, media and key APIs over plain HTTP on loopback only.
  # Other servers reach federation on port 8448 over TLS (or via .well-known
  # delegation), so production needs a TLS reverse proxy that forwards here;
  # x_forwarded makes matrixd log the client address the proxy reports.
  - port: 8008
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: true
    resources:
      - names: [client, federation, media, keys]

  # Prometheus metrics (process RSS/CPU, per-endpoint request counts and latencies).
  # Uncomment together with `enable_metrics: true` below.
  #- port: 9000
  #  bind_addresses: ["127.0.0.1"]
  #  type: metrics

enable_metrics: false
report_stats: false

## Database ##

# SQLite suits development and small servers. For production use PostgreSQL:
#   database:
#     name: psycopg2
#     args: {{user: matrixd, password: secret, dbname: matrixd, host: localhost, cp_min: 5, cp_max: 10}}
database:
  name: sqlite3
  args:
    database: {database_path_q}

## Logging ##

# A YAML file in Python logging.config.dictConfig form. Without it matrixd logs
# to stderr at INFO. Access tokens are never logged.
#log_config: "/path/to/log.config"

## Media ##

media_store_path: {media_store_path_q}
max_upload_size: 50M
max_image_pixels: 32M
url_preview_enabled: false

## Registration ##

# DEVELOPMENT SETTING: anyone who can reach the server may create accounts, with
# no email, captcha or token check. For a public server set enable_registration
# to false (create users with the shared secret below) or require tokens with
# `registration_requires_token: true`.
enable_registration: true
enable_registration_without_verification: true

# Lets admin tools create users through the shared-secret registration API.
# Anyone holding it can create admin accounts: keep it private.
registration_shared_secret: {registration_shared_secret_q}

allow_guest_access: false

password_config:
  enabled: true
  policy:
    enabled: false
    minimum_length: 8

## Rate limits ##
# Token buckets: burst_count actions at once, refilled at per_second. Examples:
#rc_message: {{per_second: 0.2, burst_count: 10}}
#rc_login:
#  address: {{per_second: 0.003, burst_count: 5}}
#  account: {{per_second: 0.003, burst_count: 5}}
#  failed_attempts: {{per_second: 0.003, burst_count: 5}}
#rc_registration: {{per_second: 0.17, burst_count: 3}}
#rc_joins:
#  local: {{per_second: 0.1, burst_count: 10}}
#  remote: {{per_second: 0.01, burst_count: 10}}
# Inbound federation requests per remote server: past sleep_limit in a window each
# waits sleep_delay, past reject_limit they get 429; at most `concurrent` run at once.
#rc_federation: {{window_size: 1000, sleep_limit: 10, sleep_delay: 500, reject_limit: 50, concurrent: 3}}

## Features ##

presence:
  enabled: true

user_directory:
  enabled: true
  search_all_users: false

## Federation ##
# A server that failed our transactions is retried after destination_min_retry_interval,
# each next failure waiting destination_retry_multiplier times longer, at most
# destination_max_retry_interval; it is caught up as soon as it is reachable again.
#federation:
#  destination_min_retry_interval: 10s
#  destination_retry_multiplier: 2
#  destination_max_retry_interval: 1d

## Caches ##
# Every in-memory cache's bound is scaled by global_factor; per_cache_factors
# overrides it for caches by name (the `name` label of
# synapse_util_caches_cache_size on /metrics). Lower saves memory, costs reads.
#caches:
#  global_factor: 1.0
#  per_cache_factors:
#    events: 2.0

## VoIP ##
# TURN servers handed to clients for calls, with time-limited credentials from a
# secret shared with the TURN server (coturn's static-auth-secret).
#turn_uris: ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"]
#turn_shared_secret: "..."
#turn_user_lifetime: 1h
#turn_allow_guests: true
"""


def _yaml_string(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def _random_secret() -> str:
    return secrets.token_urlsafe(32)


def _new_key_version() -> str:
    return "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))


def generate_config(server_name: str, config_path: str, data_dir: str) -> None:
    """Write a new homeserver.yaml at ``config_path`` and a signing key under ``data_dir``.

    An existing signing key file is kept. The config file is created with mode
    0600 since it holds secrets.

    Raises:
        FileExistsError: ``config_path`` already exists (it is left untouched).
        ConfigError: ``server_name`` is not a valid server name.
    """
    if not is_valid_server_name(server_name):
        raise ConfigError("server_name", f"{server_name!r} is not a valid server name")
    if os.path.exists(config_path):
        raise FileExistsError(config_path)

    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    file_stem = server_name.replace(":", "_").replace("[", "").replace("]", "")
    signing_key_path = os.path.join(data_dir, f"{file_stem}.signing.key")
    if not os.path.exists(signing_key_path):
        key = signedjson.key.generate_signing_key(_new_key_version())
        fd = os.open(signing_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            signedjson.key.write_signing_keys(f, [key])

    text = _TEMPLATE.format(
        server_name=server_name,
        server_name_q=_yaml_string(server_name),
        public_baseurl_q=_yaml_string("http://127.0.0.1:8008/"),
        signing_key_path_q=_yaml_string(signing_key_path),
        macaroon_secret_key_q=_yaml_string(_random_secret()),
        form_secret_q=_yaml_string(_random_secret()),
        database_path_q=_yaml_string(os.path.join(data_dir, "homeserver.db")),
        media_store_path_q=_yaml_string(os.path.join(data_dir, "media_store")),
        registration_shared_secret_q=_yaml_string(_random_secret()),
    )
    config_dir = os.path.dirname(os.path.abspath(config_path))
    os.makedirs(config_dir, exist_ok=True)
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
