"""The provenance payload: 32 bits (tool, consent, run fingerprint, date) protected by a CRC-16 and a rate-1/3
convolutional code.

Bit layout (most significant bit first)::

    tool 2 | consent 1 | run fingerprint 16 | day 13                  = 32 payload bits
    + CRC-16/CCITT over the 32 bits                                   = 48 bits
    XOR a key-derived whitening sequence (an all-zero or blank read never passes the CRC)
    -> convolutional code K=9, rate 1/3 (generators 557, 663, 711 octal), 8 zero tail bits = 168 coded bits

``day`` counts days since 2024-01-01 (covers 2024-2046). The layout version is not spent on bits: a new
layout gets a new key (:data:`thg_nerf.provenance.pattern.KEY`), i.e. a different pilot. The decoder is a
soft-decision Viterbi decoder; the CRC then rejects all but 2**-16 of wrong decodes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass

import numpy as np

from thg_nerf.errors import ThgError

#: Layout version (implied by the key, not transmitted).
VERSION = 1
#: Who produced the frames: the value of the 2-bit ``tool`` field.
TOOLS = {"api": 0, "render": 1, "dub": 2, "serve": 3}
EPOCH = _dt.date(2024, 1, 1)
FIELDS = (("tool", 2), ("consent", 1), ("fingerprint", 16), ("day", 13))
PAYLOAD_BITS = sum(n for _, n in FIELDS)
CRC_BITS = 16
#: Constraint length and generator polynomials (octal) of the convolutional code.
CONV_K = 9
CONV_GENERATORS = (0o557, 0o663, 0o711)
CODED_BITS = (PAYLOAD_BITS + CRC_BITS + CONV_K - 1) * len(CONV_GENERATORS)
_WHITEN_KEY = b"thg-nerf provenance v1 whitening"


@dataclass(frozen=True)
class Payload:
    """What every marked frame says about itself."""

    fingerprint: int
    """16-bit fingerprint of the run (0: frames not made from a run directory)."""
    day: int
    """Days since 2024-01-01 (UTC) of the rendering."""
    consent: bool
    """Whether the run recorded a consent statement (``--consent``)."""
    tool: int = TOOLS["render"]

    def __post_init__(self) -> None:
        for name, bits in FIELDS:
            value = int(getattr(self, name))
            if not 0 <= value < (1 << bits):
                raise ThgError(f"provenance payload field {name}={value} does not fit in {bits} bits")

    @classmethod
    def create(cls, fingerprint: int, consent: bool, tool: str = "render",
               when: _dt.date | None = None) -> Payload:
        """A payload for today (UTC) or ``when``; ``tool`` is a key of :data:`TOOLS`."""
        if tool not in TOOLS:
            raise ThgError(f"unknown provenance tool {tool!r} (one of {', '.join(TOOLS)})")
        when = when or _dt.datetime.now(_dt.timezone.utc).date()
        day = min(max((when - EPOCH).days, 0), (1 << 13) - 1)
        return cls(fingerprint=int(fingerprint) & 0xFFFF, day=day, consent=bool(consent), tool=TOOLS[tool])

    @property
    def date(self) -> _dt.date:
        return EPOCH + _dt.timedelta(days=int(self.day))

    @property
    def tool_name(self) -> str:
        return next((k for k, v in TOOLS.items() if v == self.tool), f"unknown({self.tool})")

    @property
    def fingerprint_hex(self) -> str:
        return f"{int(self.fingerprint):04x}"

    def to_dict(self) -> dict:
        return {"version": VERSION, "tool": self.tool_name, "run_fingerprint": self.fingerprint_hex,
                "date": self.date.isoformat(), "consent_statement": bool(self.consent)}

    def tag(self) -> str:
        """The plain-text container tag (the second, easily stripped signal)."""
        return (f"thg-nerf provenance v{VERSION}: tool={self.tool_name} run={self.fingerprint_hex} "
                f"date={self.date.isoformat()} consent={'given' if self.consent else 'none'}")

    def to_bits(self) -> np.ndarray:
        """[40] uint8 bits, most significant first (see the module docstring)."""
        out: list[int] = []
        for name, bits in FIELDS:
            value = int(getattr(self, name))
            out += [(value >> (bits - 1 - i)) & 1 for i in range(bits)]
        return np.array(out, np.uint8)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload:
        values, pos = {}, 0
        for name, n in FIELDS:
            values[name] = int("".join(str(int(b)) for b in bits[pos:pos + n]), 2)
            pos += n
        return cls(fingerprint=values["fingerprint"], day=values["day"], consent=bool(values["consent"]),
                   tool=values["tool"])


# ---------------------------------------------------------------- CRC, whitening


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT (poly 0x1021, init 0xFFFF) of a bit string -> [16] uint8 bits."""
    reg = 0xFFFF
    for b in bits:
        fb = ((reg >> 15) & 1) ^ int(b)
        reg = (reg << 1) & 0xFFFF
        if fb:
            reg ^= 0x1021
    return np.array([(reg >> (15 - i)) & 1 for i in range(16)], np.uint8)


def _whitening() -> np.ndarray:
    digest = hashlib.sha256(_WHITEN_KEY).digest()
    return np.unpackbits(np.frombuffer(digest, np.uint8))[:PAYLOAD_BITS + CRC_BITS]


_WHITEN = _whitening()


# ---------------------------------------------------------------- convolutional code


def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """``next_state[s, b]`` and output symbols ``out[s, b, g]`` (+1 for a 0 bit, -1 for a 1 bit)."""
    n_states = 1 << (CONV_K - 1)
    nxt = np.zeros((n_states, 2), np.int64)
    out = np.zeros((n_states, 2, len(CONV_GENERATORS)), np.float32)
    for s in range(n_states):
        for b in (0, 1):
            reg = (b << (CONV_K - 1)) | s  # newest bit in the top position
            nxt[s, b] = reg >> 1
            for g, poly in enumerate(CONV_GENERATORS):
                out[s, b, g] = 1.0 - 2.0 * (bin(reg & poly).count("1") & 1)
    return nxt, out


_NEXT, _OUT = _trellis()


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """[n] bits -> [(n + K - 1) * 3] coded bits (zero-terminated)."""
    state, coded = 0, []
    for b in list(bits) + [0] * (CONV_K - 1):
        coded += [int(o < 0) for o in _OUT[state, int(b)]]
        state = int(_NEXT[state, int(b)])
    return np.array(coded, np.uint8)


def viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft-decision decoding: ``soft`` [CODED_BITS] (> 0 means a 0 bit) -> [n] data bits.

    Maximises the correlation between ``soft`` and the coded symbols of a zero-terminated path.
    """
    g = len(CONV_GENERATORS)
    steps = len(soft) // g
    n_states = _NEXT.shape[0]
    dst = np.arange(n_states)
    bit = dst >> (CONV_K - 2)  # the input bit that leads into each state
    preds = np.stack([(dst << 1) & (n_states - 1), ((dst << 1) & (n_states - 1)) | 1])  # [2, states]
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    choice = np.zeros((steps, n_states), np.int64)
    for t in range(steps):
        gain = _OUT @ np.asarray(soft[t * g:(t + 1) * g], np.float64)  # [states, 2]
        cand = metric[preds] + gain[preds, bit[None, :]]  # [2, states]
        pick = np.argmax(cand, axis=0)
        choice[t] = preds[pick, dst]
        metric = cand[pick, dst]
    state, bits = 0, []
    for t in range(steps - 1, -1, -1):
        bits.append(int(bit[state]))
        state = int(choice[t, state])
    return np.array(bits[::-1][:steps - (CONV_K - 1)], np.uint8)


# ---------------------------------------------------------------- payload <-> coded bits


def encode_payload(payload: Payload) -> np.ndarray:
    """Payload -> [CODED_BITS] uint8 coded bits."""
    bits = payload.to_bits()
    return conv_encode(np.concatenate([bits, crc16(bits)]) ^ _WHITEN)


def decode_payload(soft: np.ndarray) -> Payload | None:
    """Soft coded bits [CODED_BITS] (> 0 means a 0 bit) -> the payload, or None when the CRC fails."""
    soft = np.asarray(soft, np.float64)
    if soft.shape != (CODED_BITS,) or not np.isfinite(soft).all():
        return None
    bits = viterbi(soft) ^ _WHITEN
    data, crc = bits[:PAYLOAD_BITS], bits[PAYLOAD_BITS:]
    if not np.array_equal(crc16(data), crc):
        return None
    return Payload.from_bits(data)
