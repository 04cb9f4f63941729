"""Ed25519 keys and signatures for the validator's sign-off (the `cryptography` library).

A validator makes a key pair once (`utfall keygen`): the private key stays with the
validator (PEM, PKCS#8, mode 0600), the public key (PEM) can be handed to anyone. What is
signed is always the *canonical bytes* of a JSON document: UTF-8 JSON with sorted keys
and no whitespace (`canonical`), so re-indenting a file does not break its signature but
any change of content does. A key is named by its fingerprint, `ed25519:` followed by
the first 32 hex digits of the sha256 of the 32 raw public-key bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from utfall.errors import UserError


class SigningError(UserError):
    """A key file cannot be used, or a signature is malformed."""


def canonical(data: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint_of_raw(raw: bytes) -> str:
    return "ed25519:" + sha256_hex(raw)[:32]


def keygen(path: Path) -> tuple[Path, Path, str]:
    """Write a new private key to `path` (0600) and its public key to `path`.pub.

    Refuses to overwrite either file: losing a validator's key silently is worse than an
    error. Returns both paths and the fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    for p in (path, pub):
        if p.exists():
            raise SigningError(f"{p}: already exists; choose another path or move it aside")
    if not path.parent.is_dir():
        raise SigningError(f"{path.parent}: no such directory for the key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub.write_bytes(public_pem)
    return path, pub, fingerprint_of_raw(_raw_public(key.public_key()))


class Signer:
    """A loaded private key: signs bytes, knows its public key and fingerprint."""

    def __init__(self, path: Path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningError(f"{path}: cannot read the key: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SigningError(
                f"{path}: not an unencrypted PEM private key ({first}); make one with "
                "`utfall keygen`"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"{path}: not an Ed25519 key ({type(key).__name__})")
        self._key = key
        self.raw_public = _raw_public(key.public_key())
        self.public_key = base64.b64encode(self.raw_public).decode("ascii")
        self.fingerprint = fingerprint_of_raw(self.raw_public)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode("ascii")


def verify(public_key_b64: str, signature_b64: str, data: bytes) -> bool:
    """True when `signature_b64` is the key's Ed25519 signature of `data`; False for a
    wrong signature and for malformed key or signature text."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_public_fingerprint(path: Path) -> str:
    """The fingerprint of a public key file (PEM) or of the public half of a private one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        return Signer(path).fingerprint
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key")
    return fingerprint_of_raw(_raw_public(key))
