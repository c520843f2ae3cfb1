"""Personal keys and how they are kept: only a salted hash, never the key.

A key is `cxr_<key id>.<secret>`: the key id (12 hex digits) is public and finds the row; the secret is 256 random
bits. The row keeps `HMAC-SHA256(salt, SHA-256(key))` with a random salt of its own. Keys made before cxr 0.9 are
`cxr_<secret>` with no key id; migration 0002 salted their stored SHA-256 the same way, so they keep working.

A fast hash is enough: the keys are random 256-bit strings, not passwords a slow hash must protect from guessing;
the salt makes the stored hashes useless in any other database or table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "cxr_"
ROLES = ("reader", "admin")
# a reader's name: 1 to 100 characters, no control characters or "/" (it is a path segment: DELETE /v1/readers/NAME),
# no space at either end
NAME_PATTERN = r"^[^\s/\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]{0,98}[^\s/\x00-\x1f\x7f])?$"
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


def new_key() -> tuple[str, str]:
    """A fresh key and its key id."""
    key_id = secrets.token_hex(6)
    return f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}", key_id


def key_id_of(key: str) -> str | None:
    """The key id of a current key; None for a key made before cxr 0.9 (or not a cxr key at all)."""
    head, dot, _ = key.partition(".")
    if not dot or not head.startswith(PREFIX) or not _KEY_ID.match(head[len(PREFIX) :]):
        return None
    return head[len(PREFIX) :]


def new_salt() -> str:
    return secrets.token_hex(16)


def salted_hash(salt: str, unsalted: str) -> str:
    """The stored form, from the key's plain SHA-256 (hex): that is all a pre-0.9 database held."""
    return hmac.new(salt.encode(), unsalted.encode(), hashlib.sha256).hexdigest()


def hash_key(salt: str, key: str) -> str:
    return salted_hash(salt, hashlib.sha256(key.encode()).hexdigest())


def matches(salt: str, stored: str, key: str) -> bool:
    return hmac.compare_digest(hash_key(salt, key), stored)


def valid_name(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None
