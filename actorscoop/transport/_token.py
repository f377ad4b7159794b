"""A join token's form, checked without importing ZeroMQ (``actorscoop start --address``
checks it before it starts the node; the node then derives the keys: _secure.py).

A token is ``asc1.`` and the cluster's CURVE secret key in Z85 (40 characters).
"""
TOKEN_PREFIX = "asc1."
HINT = ("Copy the whole token printed by `actorscoop start --head`, quoted: it "
        "contains characters a shell interprets.")
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_VALUE = {c: i for i, c in enumerate(_Z85)}


def secret_of(token) -> bytes:
    """The Z85 secret key in ``token``; ValueError saying what is wrong (never the key)."""
    if not isinstance(token, str):
        raise ValueError(f"a join token is a str, not {type(token).__name__}. {HINT}")
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError(f"a join token starts with {TOKEN_PREFIX!r}; this one does not "
                         f"({len(token)} characters). {HINT}")
    text = token[len(TOKEN_PREFIX):]
    if len(text) != 40:
        raise ValueError(f"malformed join token: the key part has {len(text)} characters, a key "
                         f"has 40. {HINT}")
    for i in range(0, 40, 5):
        value = 0
        for c in text[i:i + 5]:
            if c not in _VALUE:
                value = None
                break
            value = value * 85 + _VALUE[c]
        if value is None or value >= 1 << 32:
            raise ValueError("malformed join token: the key part is not Z85 text (a character "
                             "is outside the Z85 alphabet, or a 5-character group is out of "
                             f"range). {HINT}")
    return text.encode("ascii")
