"""Who is calling: the API token in the ``Authorization`` header.

The sigopt client sends its token as the user name of HTTP basic
authentication, with an empty password; other clients may send
``Authorization: Bearer <token>``.  Both are accepted.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from optiloop.service.errors import ApiError
from optiloop.store import Store, TokenRecord

# What a 401 answer asks for, so that a browser or curl knows the scheme.
CHALLENGE = {"WWW-Authenticate": 'Basic realm="optiloop API"'}


def token_in_header(header: str | None) -> str | None:
    """The token carried by an ``Authorization`` header, or None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()

    if scheme == "bearer":
        return credentials or None
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def authenticate(request: Request, store: Store) -> TokenRecord:
    """The token of the request, or a 401 that says what is missing."""
    secret = token_in_header(request.headers.get("authorization"))
    if secret is None:
        raise ApiError(
            401,
            "authentication required: send your API token as the user name of "
            "HTTP basic authentication (as the sigopt client does) or as "
            "'Authorization: Bearer <token>'; create one with "
            "'optiloop token create NAME'",
            headers=CHALLENGE,
        )
    token = store.find_token(secret)
    if token is None:
        raise ApiError(
            401,
            "invalid API token: no token with this value is valid on this "
            "server (it was never made here, or it was revoked; 'optiloop "
            "token list' shows which); create one with 'optiloop token "
            "create NAME'",
            headers=CHALLENGE,
        )
    return token
