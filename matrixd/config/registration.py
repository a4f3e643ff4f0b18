"""The registration and account section: who may sign up, passwords, token lifetimes."""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class PasswordConfig:
    """Keys under ``password_config``: ``enabled`` and the ``policy`` mapping
    (``enabled``, ``minimum_length``, ``require_digit``, ``require_symbol``,
    ``require_lowercase``, ``require_uppercase``). A disabled policy reads as
    no requirements.
    """

    # Whether password login and password changes are possible at all.
    enabled: bool = True
    minimum_length: int = 0
    require_digit: bool = False
    require_symbol: bool = False
    require_lowercase: bool = False
    require_uppercase: bool = False

    @classmethod
    def parse(cls, r: ConfigReader) -> "PasswordConfig":
        policy = r.section("policy")
        policy_enabled = policy.boolean("enabled", False)
        rules = cls(
            enabled=r.boolean("enabled", True),
            minimum_length=policy.integer("minimum_length", 0, min_value=0),
            require_digit=policy.boolean("require_digit", False),
            require_symbol=policy.boolean("require_symbol", False),
            require_lowercase=policy.boolean("require_lowercase", False),
            require_uppercase=policy.boolean("require_uppercase", False),
        )
        return rules if policy_enabled else cls(enabled=rules.enabled)


@attrs.frozen(slots=True)
class LoginViaExistingSessionConfig:
    """Keys under ``login_via_existing_session``: ``enabled`` (``POST /login/get_token``),
    ``require_ui_auth`` and ``token_timeout`` (lifetime of the issued login token).
    """

    enabled: bool = False
    require_ui_auth: bool = True
    token_timeout_ms: int = 5 * 60_000

    @classmethod
    def parse(cls, r: ConfigReader) -> "LoginViaExistingSessionConfig":
        timeout = r.duration_ms("token_timeout", 5 * 60_000)
        assert timeout is not None
        if timeout <= 0:
            raise ConfigError(r.key("token_timeout"), "must be positive")
        return cls(
            enabled=r.boolean("enabled", False),
            require_ui_auth=r.boolean("require_ui_auth", True),
            token_timeout_ms=timeout,
        )


@attrs.frozen(slots=True)
class UserDirectoryConfig:
    """Keys under ``user_directory``: ``enabled`` and ``search_all_users`` (every local
    user, not only those sharing a room with the searcher or in public rooms).
    """

    enabled: bool = True
    search_all_users: bool = False

    @classmethod
    def parse(cls, r: ConfigReader) -> "UserDirectoryConfig":
        return cls(enabled=r.boolean("enabled", True), search_all_users=r.boolean("search_all_users", False))


@attrs.frozen(slots=True)
class RegistrationConfig:
    """Keys: ``enable_registration``, ``enable_registration_without_verification``,
    ``registration_requires_token``, ``registration_shared_secret``,
    ``allow_guest_access``, ``enable_set_displayname``, ``enable_set_avatar_url``,
    ``enable_3pid_changes``, ``password_config``, and the lifetimes
    ``session_lifetime``, ``refreshable_access_token_lifetime``,
    ``refresh_token_lifetime``, ``nonrefreshable_access_token_lifetime`` (all in ms
    here; ``None`` means no expiry; ``refreshable_access_token_lifetime`` defaults
    to 5 minutes and ``None`` there means refresh tokens are not issued),
    ``bcrypt_rounds``, ``login_via_existing_session`` and ``user_directory``.
    """

    enable_registration: bool = False
    enable_registration_without_verification: bool = False
    registration_requires_token: bool = False
    registration_shared_secret: Optional[str] = None
    allow_guest_access: bool = False
    enable_set_displayname: bool = True
    enable_set_avatar_url: bool = True
    enable_3pid_changes: bool = False
    password: PasswordConfig = PasswordConfig()
    session_lifetime_ms: Optional[int] = None
    refreshable_access_token_lifetime_ms: Optional[int] = None
    refresh_token_lifetime_ms: Optional[int] = None
    nonrefreshable_access_token_lifetime_ms: Optional[int] = None
    bcrypt_rounds: int = 12
    login_via_existing_session: LoginViaExistingSessionConfig = LoginViaExistingSessionConfig()
    user_directory: UserDirectoryConfig = UserDirectoryConfig()

    @classmethod
    def parse(cls, r: ConfigReader) -> "RegistrationConfig":
        config = cls(
            enable_registration=r.boolean("enable_registration", False),
            enable_registration_without_verification=r.boolean(
                "enable_registration_without_verification", False
            ),
            registration_requires_token=r.boolean("registration_requires_token", False),
            registration_shared_secret=r.string("registration_shared_secret"),
            allow_guest_access=r.boolean("allow_guest_access", False),
            enable_set_displayname=r.boolean("enable_set_displayname", True),
            enable_set_avatar_url=r.boolean("enable_set_avatar_url", True),
            enable_3pid_changes=r.boolean("enable_3pid_changes", False),
            password=PasswordConfig.parse(r.section("password_config")),
            session_lifetime_ms=r.duration_ms("session_lifetime"),
            refreshable_access_token_lifetime_ms=r.duration_ms("refreshable_access_token_lifetime", 5 * 60_000),
            refresh_token_lifetime_ms=r.duration_ms("refresh_token_lifetime"),
            nonrefreshable_access_token_lifetime_ms=r.duration_ms("nonrefreshable_access_token_lifetime"),
            bcrypt_rounds=r.integer("bcrypt_rounds", 12, min_value=4, max_value=31),
            login_via_existing_session=LoginViaExistingSessionConfig.parse(r.section("login_via_existing_session")),
            user_directory=UserDirectoryConfig.parse(r.section("user_directory")),
        )
        if (
            config.enable_registration
            and not config.registration_requires_token
            and not config.enable_registration_without_verification
        ):
            # Open registration with no check lets anyone script accounts.
            raise ConfigError(
                "enable_registration",
                "open registration needs a verification method: set registration_requires_token: true,"
                " or accept the risk with enable_registration_without_verification: true",
            )
        if config.registration_shared_secret == "":
            raise ConfigError("registration_shared_secret", "must not be empty (remove it to disable)")
        return config
