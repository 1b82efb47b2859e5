"""Passwords hashed with argon2id: the only module that imports argon2-cffi."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_LENGTH = 1024  # longer input is refused before hashing: argon2 would take it, at a cost


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Passwords:
    """Hash and verify with argon2id at the policy's cost. A hash made at another cost still
    verifies; ``needs_rehash`` then says to store a new one."""

    def __init__(self, policy: PasswordPolicy) -> None:
        self.policy = policy
        self._hasher = PasswordHasher(
            time_cost=policy.time_cost,
            memory_cost=policy.memory_kib,
            parallelism=policy.parallelism,
            type=Type.ID,
        )
        # Verified when the user is unknown, so that an unknown name costs what a known one does.
        self._decoy = self._hasher.hash("not a password of anyone")

    def check_new(self, password: str) -> None:
        """ValueError when ``password`` may not be set (the reason, never the password)."""
        if len(password) < self.policy.min_length:
            raise ValueError(f"a password has at least {self.policy.min_length} characters")
        if len(password) > MAX_LENGTH:
            raise ValueError(f"a password has at most {MAX_LENGTH} characters")
        if not password.strip():
            raise ValueError("a password is not blank")

    def hash(self, password: str) -> str:
        self.check_new(password)
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with None (no such user) a decoy is verified
        and the answer is False."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
