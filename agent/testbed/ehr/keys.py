"""The stand-in's RSA signing key: generated on first start, kept in its state dir (0600).

One key signs access tokens, id_tokens and CDS Hooks requests; `jwks()` publishes its public half.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_FILE = "signing_key.pem"
ALG = "RS256"


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SigningKey:
        path = state_dir / KEY_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded, _thumbprint(loaded.public_key()))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key, _thumbprint(key.public_key()))

    def sign(self, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        return jwt.encode(claims, self.private_key, algorithm=ALG, headers={"kid": self.kid, "typ": typ})

    def verify(self, token: str, *, audience: str, issuer: str) -> dict[str, Any]:
        """The claims of a token this key signed; `jwt.InvalidTokenError` otherwise (exp, aud, iss)."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self.private_key.public_key(),
            algorithms=[ALG],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
        return claims

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": ALG, "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 thumbprint: a stable kid for the same key across restarts."""
    numbers = public_key.public_numbers()

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    canonical = json.dumps({"e": b64(numbers.e), "kty": "RSA", "n": b64(numbers.n)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
