"""The authorization rules of room versions 1 to 12, as pure functions.

Two entry points split the rules the way the checks on receipt of a PDU use
them: :func:`check_state_independent_auth_rules` (the event and the auth events
it cites) and :func:`check_state_dependent_auth_rules` (a room state, as state
resolution and soft-failure checks supply).  :func:`check_auth` runs both
against one state.  All raise :class:`~matrixd.api.errors.AuthError` (403
``M_FORBIDDEN``) naming the rule that failed.
"""

from matrixd.state.auth.dependent import check_auth, check_state_dependent_auth_rules
from matrixd.state.auth.independent import check_create_event, check_state_independent_auth_rules
from matrixd.state.auth.levels import (
    AuthState,
    Level,
    can_send_event,
    can_trigger_notification,
    get_membership,
    get_named_level,
    get_notification_level,
    get_required_level_for_event,
    get_room_creators,
    get_user_power_level,
    is_privileged_creator,
    parse_level,
    user_has_named_level,
    user_level,
)
from matrixd.state.auth.selection import auth_types_for_event

__all__ = [
    "AuthState",
    "Level",
    "auth_types_for_event",
    "can_send_event",
    "can_trigger_notification",
    "check_auth",
    "check_create_event",
    "check_state_dependent_auth_rules",
    "check_state_independent_auth_rules",
    "get_membership",
    "get_named_level",
    "get_notification_level",
    "get_required_level_for_event",
    "get_room_creators",
    "get_user_power_level",
    "is_privileged_creator",
    "parse_level",
    "user_has_named_level",
    "user_level",
]
