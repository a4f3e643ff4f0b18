"""The ``rc_*`` rate-limit settings: token buckets of ``per_second`` / ``burst_count``."""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class RatelimitSettings:
    """A token bucket: ``burst_count`` actions at once, refilled at ``per_second``."""

    per_second: float
    burst_count: float

    @classmethod
    def parse(cls, r: ConfigReader, name: str, default: "RatelimitSettings") -> "RatelimitSettings":
        section = r.section(name)
        return cls(
            per_second=section.number("per_second", default.per_second, min_value=0),
            burst_count=section.number("burst_count", default.burst_count, min_value=0),
        )


@attrs.frozen(slots=True)
class FederationRatelimitSettings:
    """Keys under ``rc_federation``: inbound request limits per remote server."""

    window_size_ms: int = 1000
    # Requests per window before each further one is delayed by sleep_delay.
    sleep_limit: int = 10
    sleep_delay_ms: int = 500
    # Requests per window before further ones are rejected.
    reject_limit: int = 50
    # Requests from one server processed at the same time.
    concurrent: int = 3

    @classmethod
    def parse(cls, r: ConfigReader) -> "FederationRatelimitSettings":
        s = r.section("rc_federation")
        window = s.duration_ms("window_size", 1000)
        delay = s.duration_ms("sleep_delay", 500)
        assert window is not None and delay is not None
        return cls(
            window_size_ms=window,
            sleep_limit=s.integer("sleep_limit", 10, min_value=0),
            sleep_delay_ms=delay,
            reject_limit=s.integer("reject_limit", 50, min_value=0),
            concurrent=s.integer("concurrent", 3, min_value=1),
        )


_RS = RatelimitSettings


@attrs.frozen(slots=True)
class RatelimitConfig:
    """Keys: ``rc_message``, ``rc_registration``, ``rc_login.{address,account,failed_attempts}``,
    ``rc_joins.{local,remote}``, ``rc_joins_per_room``,
    ``rc_invites.{per_room,per_user,per_issuer}``, ``rc_3pid_validation``,
    ``rc_media_create``, ``rc_admin_redaction`` (unlimited unless set), ``rc_federation``.
    """

    message: RatelimitSettings = _RS(0.2, 10)
    registration: RatelimitSettings = _RS(0.17, 3)
    login_address: RatelimitSettings = _RS(0.003, 5)
    login_account: RatelimitSettings = _RS(0.003, 5)
    login_failed_attempts: RatelimitSettings = _RS(0.003, 5)
    joins_local: RatelimitSettings = _RS(0.1, 10)
    joins_remote: RatelimitSettings = _RS(0.01, 10)
    joins_per_room: RatelimitSettings = _RS(1, 10)
    invites_per_room: RatelimitSettings = _RS(0.3, 10)
    invites_per_user: RatelimitSettings = _RS(0.003, 5)
    invites_per_issuer: RatelimitSettings = _RS(0.3, 10)
    threepid_validation: RatelimitSettings = _RS(0.003, 5)
    media_create: RatelimitSettings = _RS(10, 1000)
    admin_redaction: Optional[RatelimitSettings] = None
    federation: FederationRatelimitSettings = FederationRatelimitSettings()

    @classmethod
    def parse(cls, r: ConfigReader) -> "RatelimitConfig":
        d = cls()
        login = r.section("rc_login")
        joins = r.section("rc_joins")
        invites = r.section("rc_invites")
        admin_redaction = (
            RatelimitSettings.parse(r, "rc_admin_redaction", _RS(1, 50)) if r.has("rc_admin_redaction") else None
        )
        return cls(
            message=_RS.parse(r, "rc_message", d.message),
            registration=_RS.parse(r, "rc_registration", d.registration),
            login_address=_RS.parse(login, "address", d.login_address),
            login_account=_RS.parse(login, "account", d.login_account),
            login_failed_attempts=_RS.parse(login, "failed_attempts", d.login_failed_attempts),
            joins_local=_RS.parse(joins, "local", d.joins_local),
            joins_remote=_RS.parse(joins, "remote", d.joins_remote),
            joins_per_room=_RS.parse(r, "rc_joins_per_room", d.joins_per_room),
            invites_per_room=_RS.parse(invites, "per_room", d.invites_per_room),
            invites_per_user=_RS.parse(invites, "per_user", d.invites_per_user),
            invites_per_issuer=_RS.parse(invites, "per_issuer", d.invites_per_issuer),
            threepid_validation=_RS.parse(r, "rc_3pid_validation", d.threepid_validation),
            media_create=_RS.parse(r, "rc_media_create", d.media_create),
            admin_redaction=admin_redaction,
            federation=FederationRatelimitSettings.parse(r),
        )
