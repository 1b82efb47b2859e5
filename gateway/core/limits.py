"""What a message from outside may make us hold: plaintext, expansion, MIME structure, XML."""

from __future__ import annotations

from dataclasses import dataclass, field

# Room for the MIME around a form and its attachments in the derived plaintext cap.
MIME_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class XmlLimits:
    """Bounds on a form from outside, checked before anything else looks at it."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_text_bytes: int = 64 * 1024
    max_errors: int = 20


@dataclass(frozen=True)
class MimeLimits:
    """How much MIME structure a message from outside may have, at each level and in all."""

    max_depth: int = 8  # nesting of multiparts and message/* parts
    max_parts: int = 64  # body parts, all levels together
    max_headers: int = 100  # header fields of one entity
    max_header_bytes: int = 64 * 1024  # the header block of one entity
    max_boundary_length: int = 70  # RFC 2046 s5.1.1: 1 to 70 characters


@dataclass(frozen=True)
class IntakeLimits:
    """What one message may decrypt to: an absolute cap and a cap relative to its ciphertext
    (compression bombs), and the MIME structure of the message and of its plaintext."""

    max_plaintext_bytes: int = (10 << 20) + (1 << 20) + MIME_OVERHEAD
    max_expansion: int = 100  # plaintext bytes per ciphertext byte, above expansion_floor
    # Up to this much plaintext the ratio does not apply: a form of the largest size allowed
    # (xml.max_bytes) with its MIME, which may compress to almost nothing.
    expansion_floor: int = (1 << 20) + MIME_OVERHEAD
    mime: MimeLimits = field(default_factory=MimeLimits)

    def plaintext_cap(self, ciphertext_bytes: int) -> tuple[int, str]:
        """The most plaintext ``ciphertext_bytes`` of ciphertext may decrypt to, and why."""
        relative = max(self.expansion_floor, self.max_expansion * ciphertext_bytes)
        if relative < self.max_plaintext_bytes:
            return relative, f"expands more than {self.max_expansion} times"
        return self.max_plaintext_bytes, f"exceeds {self.max_plaintext_bytes} bytes"


def derived_plaintext_cap(max_message_bytes: int, max_form_bytes: int) -> int:
    """The plaintext cap where the configuration names none: a message of the largest size holds
    at most its own size in attachments (encrypted data does not shrink them), plus a form of
    the largest size (which may have been compressed to almost nothing), plus MIME."""
    return max_message_bytes + max_form_bytes + MIME_OVERHEAD
