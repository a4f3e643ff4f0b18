"""Signing key generation, the key file format and verify key encoding."""

from __future__ import annotations

import io
import os
import stat

import signedjson.key
from twisted.trial import unittest

from matrixd.crypto.keys import (
    KeyFileError,
    decode_verify_key,
    encode_signing_key_seed,
    encode_verify_key,
    format_signing_keys,
    generate_key_version,
    generate_signing_key,
    get_verify_key,
    is_valid_key_version,
    key_id,
    parse_signing_keys,
    read_or_generate_signing_key_file,
    read_signing_key_file,
    signing_key_from_seed,
    write_signing_key_file,
)

# The appendix "Cryptographic Test Vectors" seed. Its last character carries two
# non-zero padding bits, so the canonical re-encoding ends in "A0" instead of "A1".
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SEED_CANONICAL = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"
SPEC_PUBLIC_KEY = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"


class GenerateTest(unittest.TestCase):
    def test_generated_keys(self) -> None:
        """New keys get a valid random version, a key id and distinct key material."""
        a, b = generate_signing_key(), generate_signing_key("v2")
        self.assertTrue(is_valid_key_version(a.version))
        self.assertEqual(key_id(b), "ed25519:v2")
        self.assertNotEqual(encode_signing_key_seed(a), encode_signing_key_seed(b))
        self.assertTrue(all(is_valid_key_version(generate_key_version()) for _ in range(50)))

    def test_invalid_version_refused(self) -> None:
        """Versions outside [a-zA-Z0-9_] are refused."""
        for bad in ("", "a:b", "a b", "é", "a-b"):
            with self.assertRaises(KeyFileError):
                generate_signing_key(bad)


class SeedTest(unittest.TestCase):
    def test_spec_seed(self) -> None:
        """The appendix seed decodes to a key whose public half is fixed; re-encoding is canonical."""
        key = signing_key_from_seed("1", SPEC_SEED)
        self.assertEqual(encode_signing_key_seed(key), SPEC_SEED_CANONICAL)
        self.assertEqual(encode_verify_key(get_verify_key(key)), SPEC_PUBLIC_KEY)
        self.assertEqual(encode_signing_key_seed(signing_key_from_seed("1", SPEC_SEED_CANONICAL + "=")), SPEC_SEED_CANONICAL)

    def test_bad_seeds(self) -> None:
        """Non-base64 and wrong-length seeds are refused."""
        for bad in ("not base64 !", "AAAA", SPEC_SEED + "AAAA"):
            with self.assertRaises(KeyFileError):
                signing_key_from_seed("1", bad)


class KeyFileTest(unittest.TestCase):
    def test_format_matches_signedjson_writer(self) -> None:
        """Our file text is exactly what signedjson's write_signing_keys writes, and parses back."""
        keys = [signing_key_from_seed("1", SPEC_SEED), generate_signing_key("a_b2")]
        buf = io.StringIO()
        signedjson.key.write_signing_keys(buf, keys)
        self.assertEqual(format_signing_keys(keys), buf.getvalue())
        self.assertEqual(format_signing_keys(keys).splitlines()[0], f"ed25519 1 {SPEC_SEED_CANONICAL}")
        parsed = parse_signing_keys(buf.getvalue())
        self.assertEqual([key_id(k) for k in parsed], ["ed25519:1", "ed25519:a_b2"])
        self.assertEqual([encode_signing_key_seed(k) for k in parsed], [encode_signing_key_seed(k) for k in keys])

    def test_parse_errors_name_the_line(self) -> None:
        """Malformed lines are reported with their line number; blank lines are skipped."""
        cases = {
            "ed25519 1": "line 1",
            f"\ncurve25519 1 {SPEC_SEED}": "line 2",
            f"ed25519 a:b {SPEC_SEED}": "line 1",
            "ed25519 1 AAAA": "line 1",
        }
        for text, where in cases.items():
            with self.assertRaises(KeyFileError) as cm:
                parse_signing_keys(text)
            self.assertIn(where, str(cm.exception))
        self.assertEqual(len(parse_signing_keys(f"\n\ned25519 1 {SPEC_SEED}\n\n")), 1)

    def test_write_and_read_file(self) -> None:
        """Writing creates an owner-only file that reads back the same keys."""
        path = self.mktemp()
        key = generate_signing_key("k")
        write_signing_key_file(path, [key])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        (read,) = read_signing_key_file(path)
        self.assertEqual((key_id(read), encode_signing_key_seed(read)), ("ed25519:k", encode_signing_key_seed(key)))

    def test_empty_file_refused(self) -> None:
        """A key file with no keys is an error, not an empty key list."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("\n")
        with self.assertRaises(KeyFileError):
            read_signing_key_file(path)

    def test_read_or_generate(self) -> None:
        """A missing key file is generated once and then reused."""
        path = self.mktemp()
        first = read_or_generate_signing_key_file(path)
        second = read_or_generate_signing_key_file(path)
        self.assertEqual(len(first), 1)
        self.assertEqual(encode_signing_key_seed(first[0]), encode_signing_key_seed(second[0]))
        self.assertEqual(key_id(first[0]), key_id(second[0]))


class VerifyKeyTest(unittest.TestCase):
    def test_round_trip_and_verify(self) -> None:
        """A published verify key decodes to a key that checks the signer's signatures."""
        key = generate_signing_key("x")
        vk = decode_verify_key("ed25519:x", encode_verify_key(get_verify_key(key)))
        self.assertEqual(key_id(vk), "ed25519:x")
        vk.verify(b"msg", key.sign(b"msg").signature)

    def test_bad_verify_keys(self) -> None:
        """Unsupported algorithms, empty versions, bad base64 and wrong lengths are refused."""
        good = encode_verify_key(get_verify_key(generate_signing_key("x")))
        cases = [("curve25519:x", good), ("ed25519:", good), ("ed25519", good), ("ed25519:x", "!!"), ("ed25519:x", "AAAA")]
        for kid, b64 in cases:
            with self.assertRaises(KeyFileError, msg=kid + " " + b64):
                decode_verify_key(kid, b64)
