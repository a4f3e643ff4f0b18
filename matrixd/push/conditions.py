"""Push rule conditions, compiled once and evaluated many times.

Each condition becomes a :class:`Condition` whose ``matches`` takes the
event's :class:`EventFacts` (computed once per event) and the
:class:`UserFacts` of the user whose rules are running.  Conditions that do
not depend on the user are memoised per event, so the default ruleset costs
one evaluation per event for them however many members the room has.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Iterable, Mapping, Optional

import attrs

from matrixd.util.dotted import split_dotted_path
from matrixd.types import JsonDict

#: Stands for the rule owner's user id in the templates of the default rules.
USER_PLACEHOLDER = "[the user's Matrix ID]"
#: Stands for the localpart of the rule owner's user id (the pattern of ``.m.rule.contains_user_name``).
LOCALPART_PLACEHOLDER = "[the local part of the user's Matrix ID]"
_MISSING = object()
_WORD_CHARS = "A-Za-z0-9_"
_MAX_SAFE_INT = 2**53 - 1


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str, word_boundary: bool) -> "re.Pattern[str]":
    """The regex for a glob (``*``, ``?``; case-insensitive), anchored or bounded by word boundaries."""
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*?")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    if word_boundary:
        return re.compile(f"(?<![{_WORD_CHARS}])(?:{body})(?![{_WORD_CHARS}])", re.IGNORECASE | re.DOTALL)
    return re.compile(f"(?:{body})\\Z", re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    """Whether ``value`` matches the glob (anywhere on word boundaries, or as a whole)."""
    regex = compile_glob(pattern, word_boundary)
    return (regex.search(value) if word_boundary else regex.match(value)) is not None


def split_dotted_key(key: str) -> tuple[str, ...]:
    """A dot-separated property path, ``\\.`` and ``\\\\`` being a literal dot and backslash."""
    return split_dotted_path(key)


def _is_simple_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _same_value(a: Any, b: Any) -> bool:
    """Exact equality without casting (``True`` is not ``1``)."""
    return type(a) is type(b) and a == b


class PowerLevelsNeeded(Exception):
    """A ``sender_notification_permission`` condition ran before the room's power levels were loaded.

    Few events get that far (the default rules ask only for ``@room``
    mentions), so the generator evaluates without them, and on this
    exception loads them into :class:`EventFacts` and evaluates again.
    """


@functools.lru_cache(maxsize=4096)
def _word_regex(text: str) -> "re.Pattern[str]":
    """``text`` itself (case-insensitive) between word boundaries (``contains_display_name``)."""
    return re.compile(f"(?<![{_WORD_CHARS}]){re.escape(text)}(?![{_WORD_CHARS}])", re.IGNORECASE)


def localpart_of(user_id: str) -> str:
    """The localpart of ``@localpart:server`` (the whole id without its sigil if it has no colon)."""
    return user_id[1:].split(":", 1)[0]


_WORD_RUN = re.compile(f"[{_WORD_CHARS}]+")
_Pairs = tuple[tuple[str, str], ...]


@attrs.frozen(slots=True)
class MentionTargets:
    """Texts (display names or localparts) of users, indexed to find which may occur in a body.

    Pairs are (case-folded text, lower-cased user id).  An ASCII text that
    starts with a word character can only match an ASCII body on word
    boundaries where the body has its leading word as a whole word, so those
    are looked up by that word; the other texts (and every text, for a
    non-ASCII body) are tested as substrings of the case-folded body.  The
    result is a superset of the users the regex test matches.
    """

    pairs: _Pairs
    by_word: dict[str, _Pairs]
    other: _Pairs

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]]) -> "MentionTargets":
        all_pairs = tuple(pairs)
        by_word: dict[str, list[tuple[str, str]]] = {}
        other: list[tuple[str, str]] = []
        for text, user in all_pairs:
            lead = _WORD_RUN.match(text) if text.isascii() else None
            if lead is None:
                other.append((text, user))
            else:
                by_word.setdefault(lead.group(), []).append((text, user))
        return cls(all_pairs, {w: tuple(p) for w, p in by_word.items()}, tuple(other))

    def find(self, facts: "EventFacts", body: str) -> frozenset[str]:
        """The users whose text may match ``body`` (already case-folded)."""
        words = facts.body_words()
        if words is None:
            return frozenset(u for text, u in self.pairs if text in body)
        found = {u for text, u in self.other if text in body}
        by_word = self.by_word
        for word in words:
            for text, u in by_word.get(word, ()):
                if text in body:
                    found.add(u)
        return frozenset(found)


@attrs.frozen(slots=True)
class MentionIndex:
    """The local members' legacy mention targets (display names, localparts), built once per room state."""

    display_names: MentionTargets
    localparts: MentionTargets
    #: Some localpart holds a glob character (historical ids): it may match text it does not contain.
    glob_localparts: bool = False

    @classmethod
    def build(cls, names: Mapping[str, Optional[str]], local_users: Iterable[str]) -> "MentionIndex":
        localparts = tuple((localpart_of(u).casefold(), u.lower()) for u in local_users)
        return cls(
            MentionTargets.build((n.casefold(), u.lower()) for u, n in names.items() if n),
            MentionTargets.build(localparts),
            any("*" in lp or "?" in lp for lp, _ in localparts),
        )


@attrs.define
class EventFacts:
    """What conditions read about one event, computed once per event."""

    event: JsonDict
    member_count: int
    #: The sender's power level and the room's notification levels (None: not loaded yet).
    sender_power: Optional[float]
    notification_levels: Optional[dict[str, int]]
    #: Results of user-independent conditions, by condition id.
    memo: dict[int, bool] = attrs.field(factory=dict)
    #: Outcomes by (ruleset id, answers of its user-dependent conditions); see ``CompiledRuleset``.
    outcomes: dict[tuple[int, tuple[bool, ...]], Any] = attrs.field(factory=dict)
    #: The room's mention targets (None: unknown, user-dependent body conditions cannot narrow).
    mentions: Optional[MentionIndex] = None
    _values: dict[str, Any] = attrs.field(factory=dict)
    _folded_body: Optional[str] = None
    _has_mentions: Optional[bool] = None
    _body_words: Optional[frozenset[str]] = None

    @property
    def has_mentions(self) -> bool:
        """Whether the content has an ``m.mentions`` property (of any value): legacy mention rules are off."""
        if self._has_mentions is None:
            content = self.event.get("content")
            self._has_mentions = isinstance(content, dict) and "m.mentions" in content
        return self._has_mentions

    def folded_body(self) -> Optional[str]:
        """``content.body`` case-folded, None if it is not a string."""
        if self._folded_body is None:
            body = self.value("content.body")
            if not isinstance(body, str):
                return None
            self._folded_body = body.casefold()
        return self._folded_body

    def body_words(self) -> Optional[frozenset[str]]:
        """The lower-case word runs of an ASCII ``content.body`` (None: no body, or not ASCII)."""
        if self._body_words is None:
            body = self.folded_body()
            if body is None or not body.isascii():
                return None
            self._body_words = frozenset(_WORD_RUN.findall(body))
        return self._body_words

    def value(self, key: str, path: Optional[tuple[str, ...]] = None) -> Any:
        """The property at the dotted path (``path``: the key already split), or ``_MISSING``."""
        found = self._values.get(key, _MISSING)
        if found is _MISSING and key not in self._values:
            current: Any = self.event
            for part in path if path is not None else split_dotted_key(key):
                if not isinstance(current, dict) or part not in current:
                    current = _MISSING
                    break
                current = current[part]
            self._values[key] = current
            found = current
        return found


@attrs.frozen(slots=True)
class UserFacts:
    user_id: str
    display_name: Optional[str] = None


class Condition:
    """One compiled condition; ``user_dependent`` ones are never memoised across users."""

    user_dependent = False

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        raise NotImplementedError

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        """For a user-dependent condition: lower-cased user ids it can match for this event (None: anyone)."""
        return None


class EventMatch(Condition):
    def __init__(self, key: str, pattern: str) -> None:
        self.key = key
        self.path = split_dotted_key(key)
        self.pattern = pattern
        self.user_dependent = pattern == USER_PLACEHOLDER
        self._word_boundary = key == "content.body"
        #: A whole-value pattern without wildcards over ASCII: a case-insensitive comparison does.
        self.literal: Optional[str] = None
        if not self.user_dependent:
            compile_glob(pattern, self._word_boundary)
            if not self._word_boundary and "*" not in pattern and "?" not in pattern and pattern.isascii():
                self.literal = pattern.lower()

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        value = facts.value(self.key, self.path)
        if not isinstance(value, str):
            return False
        if self.literal is not None and value.isascii():
            return value.lower() == self.literal
        pattern = user.user_id if self.user_dependent else self.pattern
        return glob_matches(pattern, value, word_boundary=self._word_boundary)

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        if self._word_boundary:
            return None
        value = facts.value(self.key, self.path)
        return frozenset([value.lower()]) if isinstance(value, str) else frozenset()


class PropertyIs(Condition):
    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        self.path = split_dotted_key(key)
        self.value = value
        self.user_dependent = value == USER_PLACEHOLDER

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        found = facts.value(self.key, self.path)
        if found is _MISSING or not _is_simple_value(found):
            return False
        return _same_value(found, user.user_id if self.user_dependent else self.value)

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        found = facts.value(self.key, self.path)
        return frozenset([found.lower()]) if isinstance(found, str) else frozenset()


class PropertyContains(Condition):
    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        self.path = split_dotted_key(key)
        self.value = value
        self.user_dependent = value == USER_PLACEHOLDER

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        found = facts.value(self.key, self.path)
        if not isinstance(found, list):
            return False
        wanted = user.user_id if self.user_dependent else self.value
        return any(_is_simple_value(v) and _same_value(v, wanted) for v in found)

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        found = facts.value(self.key, self.path)
        if not isinstance(found, list):
            return frozenset()
        return frozenset(v.lower() for v in found if isinstance(v, str))


def _narrow(facts: EventFacts, targets: Optional[MentionTargets]) -> Optional[frozenset[str]]:
    """The users whose target text may occur in the body on word boundaries (a superset of the matches)."""
    body = facts.folded_body()
    if body is None:
        return frozenset()
    if targets is None:
        return None
    return targets.find(facts, body)


class ContainsDisplayName(Condition):
    user_dependent = True

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        body = facts.value("content.body")
        if not isinstance(body, str) or not user.display_name:
            return False
        return _word_regex(user.display_name).search(body) is not None

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        return _narrow(facts, facts.mentions.display_names if facts.mentions is not None else None)


class ContainsLocalpart(Condition):
    """``content.body`` matches the user's localpart as a glob on word boundaries (``.m.rule.contains_user_name``).

    The same test as an ``event_match`` on ``content.body`` whose pattern is the localpart.
    """

    user_dependent = True

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        body = facts.value("content.body")
        if not isinstance(body, str):
            return False
        localpart = localpart_of(user.user_id)
        return bool(localpart) and glob_matches(localpart, body, word_boundary=True)

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        index = facts.mentions
        if index is None:
            return None if facts.folded_body() is not None else frozenset()
        if index.glob_localparts:
            return None
        return _narrow(facts, index.localparts)


_COMPARATORS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
_MEMBER_COUNT_RE = re.compile(r"\A(==|<=|>=|<|>)?([0-9]+)\Z")


class RoomMemberCount(Condition):
    def __init__(self, spec: str) -> None:
        m = _MEMBER_COUNT_RE.match(spec)
        if m is None:
            raise ValueError(f"bad room_member_count 'is': {spec!r}")
        self._compare = _COMPARATORS[m.group(1) or "=="]
        self._n = int(m.group(2))

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        return self._compare(facts.member_count, self._n)


class SenderNotificationPermission(Condition):
    def __init__(self, key: str) -> None:
        self.key = key

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        if facts.sender_power is None or facts.notification_levels is None:
            raise PowerLevelsNeeded()
        return facts.sender_power >= facts.notification_levels.get(self.key, 50)


class NeverMatches(Condition):
    """A condition kind this server does not know: the spec says the rule then never matches."""

    def matches(self, facts: EventFacts, user: UserFacts) -> bool:
        return False


def compile_condition(raw: Any) -> Condition:
    """The compiled form of one condition; malformed ones never match (rules from older clients)."""
    if not isinstance(raw, dict):
        return NeverMatches()
    kind = raw.get("kind")
    key = raw.get("key")
    try:
        if kind == "event_match" and isinstance(key, str) and isinstance(raw.get("pattern"), str):
            return EventMatch(key, raw["pattern"])
        if kind == "event_property_is" and isinstance(key, str) and "value" in raw:
            return PropertyIs(key, raw["value"])
        if kind == "event_property_contains" and isinstance(key, str) and "value" in raw:
            return PropertyContains(key, raw["value"])
        if kind == "contains_display_name":
            return ContainsDisplayName()
        if kind == "room_member_count" and isinstance(raw.get("is"), str):
            return RoomMemberCount(raw["is"])
        if kind == "sender_notification_permission" and isinstance(key, str):
            return SenderNotificationPermission(key)
    except ValueError:
        pass
    return NeverMatches()


def validate_condition(raw: Any) -> Optional[str]:
    """Why a client-supplied condition is unacceptable, or None."""
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        return "each condition must be an object with a string 'kind'"
    kind = raw["kind"]
    if kind in ("event_match", "event_property_is", "event_property_contains", "sender_notification_permission"):
        if not isinstance(raw.get("key"), str):
            return f"{kind} condition needs a string 'key'"
    if kind == "event_match" and not isinstance(raw.get("pattern"), str):
        return "event_match condition needs a string 'pattern'"
    if kind in ("event_property_is", "event_property_contains"):
        if "value" not in raw or not _is_simple_value(raw["value"]):
            return f"{kind} condition needs a 'value' that is a string, integer, boolean or null"
    if kind == "room_member_count" and (
        not isinstance(raw.get("is"), str) or _MEMBER_COUNT_RE.match(raw["is"]) is None
    ):
        return "room_member_count condition needs 'is' like '2', '==2', '<10', '>=3'"
    return None
