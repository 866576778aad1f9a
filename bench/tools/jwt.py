#!/usr/bin/env python3
"""Mint the HS256 test tokens for the benchmark, with the standard library only.

Usage: jwt.py SECRET
Prints one `kind<TAB>token` line per kind: `good` (used for the benchmark itself
and as the positive case of the correctness gate) and a set of tokens that every
JWT-checking target must refuse with 401.

The claims mirror otpgate's own tokens (SPEC section 4): sub, mobile, iat, nbf,
exp, iss, aud, jti, sid (the session; otpgate refuses a token without one).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import time


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode(header: dict, claims: dict, key: bytes | None) -> str:
    # Compact JSON, like real JWT libraries produce.
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{h}.{p}".encode("ascii")
    if key is None:  # alg "none": empty signature part
        return f"{h}.{p}."
    sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: jwt.py SECRET")
    secret = sys.argv[1].encode()
    now = int(time.time())

    def claims(**over):
        c = {
            "sub": "1",
            "mobile": "+15555550100",
            "iat": now,
            "nbf": now,
            # A day: long enough that no benchmark run outlives its token.
            "exp": now + 86400,
            "iss": "otpgate",
            "aud": "otpgate",
            "jti": secrets.token_hex(16),
            "sid": secrets.token_hex(16),
        }
        c.update(over)
        return c

    hs256 = {"alg": "HS256", "typ": "JWT"}
    other_key = secrets.token_urlsafe(36).encode()
    tokens = {
        "good": encode(hs256, claims(), secret),
        # An hour in the past: far beyond any reasonable leeway.
        "expired": encode(hs256, claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600), secret),
        "wrong_key": encode(hs256, claims(), other_key),
        "wrong_iss": encode(hs256, claims(iss="someone-else"), secret),
        "wrong_aud": encode(hs256, claims(aud="someone-else"), secret),
        "alg_none": encode({"alg": "none", "typ": "JWT"}, claims(), None),
        # nbf an hour ahead: not yet valid.
        "not_yet_valid": encode(hs256, claims(nbf=now + 3600), secret),
        "malformed": "not-a-jwt",
    }
    for kind, tok in tokens.items():
        print(f"{kind}\t{tok}")


if __name__ == "__main__":
    main()
