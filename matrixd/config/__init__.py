"""Typed, validated configuration (frozen attrs classes) and ``--generate-config``.

``load_config(path)`` reads a homeserver.yaml (Synapse key names) into a
``RootConfig``; ``parse_config_dict(mapping)`` does the same for a dict. A bad
value raises ``matrixd.api.errors.ConfigError`` naming the key and the problem.
Sections: ``config.server``, ``.listeners``, ``.database``, ``.registration``,
``.ratelimiting``, ``.media``, ``.voip``, ``.metrics``, ``.logging``.
"""

from matrixd.config.root import RootConfig, load_config, parse_config_dict

__all__ = ["RootConfig", "load_config", "parse_config_dict"]
