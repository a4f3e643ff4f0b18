"""The room version registry against the flags each ``content/rooms/vN.md`` defines."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.api.errors import Codes, UnsupportedRoomVersionError
from matrixd.events.room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSIONS,
    EventFormat,
    RedactionRules,
    StateResAlgorithm,
    get_room_version,
)

ALL = [str(i) for i in range(1, 13)]


def _versions_with(flag: str) -> list[str]:
    return [v for v in ALL if getattr(KNOWN_ROOM_VERSIONS[v], flag)]


class RoomVersionFlagsTest(unittest.TestCase):
    def test_registry_holds_1_to_12_all_stable(self) -> None:
        """Versions 1-12 are known and all marked stable; 12 is the default."""
        self.assertEqual(sorted(KNOWN_ROOM_VERSIONS, key=int), ALL)
        self.assertTrue(all(KNOWN_ROOM_VERSIONS[v].stable for v in ALL))
        self.assertEqual(DEFAULT_ROOM_VERSION.identifier, "12")

    def test_event_formats(self) -> None:
        """v1-2 carry event ids, v3 hashes in standard base64, v4+ URL-safe base64."""
        formats = {v: KNOWN_ROOM_VERSIONS[v].event_format for v in ALL}
        self.assertEqual(formats["1"], EventFormat.V1)
        self.assertEqual(formats["2"], EventFormat.V1)
        self.assertEqual(formats["3"], EventFormat.V2)
        self.assertTrue(all(formats[v] == EventFormat.V3 for v in ALL[3:]))

    def test_state_resolution(self) -> None:
        """v1 uses state res v1, v2-v11 v2, v12 the v2.1 variant."""
        algos = [KNOWN_ROOM_VERSIONS[v].state_res for v in ALL]
        self.assertEqual(algos, [StateResAlgorithm.V1] + [StateResAlgorithm.V2] * 10 + [StateResAlgorithm.V2_1])

    def test_redaction_rules(self) -> None:
        """Redaction algorithm changes in v6, v8, v9 and v11."""
        rules = [KNOWN_ROOM_VERSIONS[v].redaction_rules for v in ALL]
        R = RedactionRules
        self.assertEqual(rules, [R.V1] * 5 + [R.V6] * 2 + [R.V8] + [R.V9] * 2 + [R.V11] * 2)

    def test_feature_flags(self) -> None:
        """Each behaviour flag is on exactly in the versions the spec introduces it for."""
        expected = {
            "enforce_key_validity": ALL[4:],
            "special_case_aliases_auth": ALL[:5],
            "special_case_redaction_auth": ALL[:2],
            "strict_canonicaljson": ALL[5:],
            "limit_notifications_power_levels": ALL[5:],
            "knock_join_rule": ALL[6:],
            "restricted_join_rule": ALL[7:],
            "knock_restricted_join_rule": ALL[9:],
            "enforce_int_power_levels": ALL[9:],
            "implicit_room_creator": ALL[10:],
            "redacts_in_content": ALL[10:],
            "room_id_is_create_event_hash": ["12"],
            "privileged_creators": ["12"],
        }
        for flag, versions in expected.items():
            self.assertEqual(_versions_with(flag), versions, flag)

    def test_unknown_version_rejected(self) -> None:
        """Unknown or non-string versions raise M_UNSUPPORTED_ROOM_VERSION."""
        for bad in ("13", "", 1, None, "org.example.v1"):
            with self.assertRaises(UnsupportedRoomVersionError) as cm:
                get_room_version(bad)
            self.assertEqual(cm.exception.errcode, Codes.UNSUPPORTED_ROOM_VERSION)
        self.assertIs(get_room_version("9"), KNOWN_ROOM_VERSIONS["9"])
