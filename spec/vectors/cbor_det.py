"""Minimal CBOR encoder for the Custodia test vectors.

`enc` produces deterministic CBOR (RFC 8949 section 4.2.1: shortest heads,
definite lengths, map keys sorted by the bytewise order of their encodings).
The wrapper classes below let generate.py build deliberately NON-deterministic
encodings (wide integer heads, unsorted or duplicate map keys, indefinite
lengths, raw byte splices) for the non-canonical vectors.

This module is written from RFC 8949 alone; generate.py cross-checks every
deterministic encoding it produces against cbor2.dumps(canonical=True).
"""


class Raw:
    """Bytes spliced verbatim into the output."""

    def __init__(self, data: bytes):
        self.data = data


class Pairs:
    """A map encoded with its pairs in the given order (may be unsorted or repeat a key)."""

    def __init__(self, pairs):
        self.pairs = list(pairs)


class Indef:
    """An array encoded with indefinite length (0x9f ... 0xff)."""

    def __init__(self, items):
        self.items = list(items)


class WideUint:
    """A uint encoded with a head `width` bytes wide (1, 2, 4 or 8), even if shorter would do."""

    def __init__(self, value: int, width: int):
        self.value = value
        self.width = width


class WideBstr:
    """A bstr whose length head is `width` bytes wide."""

    def __init__(self, value: bytes, width: int):
        self.value = value
        self.width = width


class Tag:
    def __init__(self, tag: int, value):
        self.tag = tag
        self.value = value


_AI = {1: 24, 2: 25, 4: 26, 8: 27}


def head(major: int, n: int, width: int = None) -> bytes:
    if n < 0:
        raise ValueError("negative head argument")
    if width is None:
        if n < 24:
            return bytes([(major << 5) | n])
        for width in (1, 2, 4, 8):
            if n < (1 << (8 * width)):
                break
        else:
            raise ValueError("integer too large for CBOR head")
    return bytes([(major << 5) | _AI[width]]) + n.to_bytes(width, "big")


def enc(x) -> bytes:
    if isinstance(x, Raw):
        return x.data
    if isinstance(x, WideUint):
        return head(0, x.value, x.width)
    if isinstance(x, WideBstr):
        return head(2, len(x.value), x.width) + x.value
    if isinstance(x, Pairs):
        return head(5, len(x.pairs)) + b"".join(enc(k) + enc(v) for k, v in x.pairs)
    if isinstance(x, Indef):
        return b"\x9f" + b"".join(enc(i) for i in x.items) + b"\xff"
    if isinstance(x, Tag):
        return head(6, x.tag) + enc(x.value)
    if x is None:  # only for re-encoding decoded input; Custodia structures never contain null
        return b"\xf6"
    if x is False:
        return b"\xf4"
    if x is True:
        return b"\xf5"
    if isinstance(x, int):
        return head(0, x) if x >= 0 else head(1, -1 - x)
    if isinstance(x, (bytes, bytearray)):
        return head(2, len(x)) + bytes(x)
    if isinstance(x, str):
        b = x.encode("utf-8")
        return head(3, len(b)) + b
    if isinstance(x, (list, tuple)):
        return head(4, len(x)) + b"".join(enc(i) for i in x)
    if isinstance(x, dict):
        items = sorted((enc(k), enc(v)) for k, v in x.items())
        for a, b in zip(items, items[1:]):
            if a[0] == b[0]:
                raise ValueError("duplicate map key")
        return head(5, len(items)) + b"".join(k + v for k, v in items)
    # cbor2.CBORTag, without importing cbor2 here
    if type(x).__name__ == "CBORTag":
        return head(6, x.tag) + enc(x.value)
    raise TypeError(f"type not allowed in Custodia CBOR: {type(x).__name__}")
