"""Lock-out policy for unlock attempts, persisted in the template database.

Like a phone: after ``max_failures`` consecutive rejected attempts (default 5) the
subject is locked out for ``cooldown`` seconds (default 30); every further lock-out
multiplies the period by ``growth`` (default 2: 30 s, 60 s, 120 s, ... up to
``max_cooldown``, 1 h).  An accepted attempt resets the counters.  The state lives in
the ``attempts`` table of the :class:`~edgeconv.runtime.store.TemplateStore`, so it
survives restarts and power cuts (each update is one durable transaction).

A *subject* is an enrolled user (their counter) or :data:`IDENTIFY_SUBJECT`, the counter of
1:N unlock (identify mode), where a rejection cannot be attributed to a user.  The lock-out
rules close the ways around a lock-out by switching modes:

* a user's lock-out holds in every mode: 1:1 attempts for them are refused, and an
  identify-mode match to them is refused and counted as a rejection of identify mode;
* an identify-mode lock-out is a device lock-out: every attempt, in any mode, is refused
  until it ends (whoever failed at the camera was not attributable to a user);
* the identify counter's key (:data:`IDENTIFY_SUBJECT`) contains a control character, which
  no user name may (:func:`edgeconv.runtime.store.check_user_name`), so enrolling or removing
  any user never touches it.

Clocks: a Raspberry Pi has no real-time clock, so wall time can jump at boot.  A
remaining lock-out is never longer than the period that was imposed (a clock set
backwards cannot lock a user out for ever); a clock set forwards shortens it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgeconv.errors import EdgeconvError

IDENTIFY_SUBJECT = "\x01identify"   # never a valid user name (control character)
DEFAULT_MAX_FAILURES = 5
DEFAULT_COOLDOWN = 30.0
DEFAULT_GROWTH = 2.0
DEFAULT_MAX_COOLDOWN = 3600.0


class LockedOut(EdgeconvError):
    """Too many rejected attempts: attempts are refused until the cool-down ends."""

    def __init__(self, subject: str, remaining: float, failures: int):
        who = ("identify mode (and with it every unlock on this store)"
               if subject == IDENTIFY_SUBJECT else f"user {subject!r}")
        super().__init__(f"{who} is locked out after {failures} rejected attempts; "
                         f"try again in {max(1, round(remaining))} s")
        self.subject = subject
        self.remaining = remaining


@dataclass
class AttemptState:
    subject: str
    failures: int = 0          # consecutive rejections since the last accept / lock-out
    lockouts: int = 0          # consecutive lock-outs since the last accept
    locked_at: float | None = None
    locked_until: float | None = None
    last_attempt: float | None = None

    def remaining(self, now: float) -> float:
        """Seconds of lock-out left at ``now`` (0 when not locked)."""
        if self.locked_until is None:
            return 0.0
        period = self.locked_until - (self.locked_at if self.locked_at is not None else now)
        left = self.locked_until - now
        return max(0.0, min(left, period))


class LockoutPolicy:
    """Count rejected attempts per subject in ``store`` and impose cool-downs."""

    def __init__(self, store, max_failures: int = DEFAULT_MAX_FAILURES,
                 cooldown: float = DEFAULT_COOLDOWN, growth: float = DEFAULT_GROWTH,
                 max_cooldown: float = DEFAULT_MAX_COOLDOWN, clock=time.time):
        if int(max_failures) < 1:
            raise EdgeconvError(f"max_failures must be >= 1, got {max_failures}")
        if not 0 <= float(cooldown) <= float(max_cooldown):
            raise EdgeconvError(f"--cooldown {float(cooldown):g}: must be between 0 and "
                                f"{float(max_cooldown):g} seconds (the longest lock-out)")
        if float(growth) < 1:
            raise EdgeconvError(f"lock-out growth must be >= 1, got {growth}")
        self.store = store
        self.max_failures = int(max_failures)
        self.cooldown = float(cooldown)
        self.growth = float(growth)
        self.max_cooldown = float(max_cooldown)
        self.clock = clock

    def period(self, lockouts: int) -> float:
        """Cool-down of the ``lockouts``-th consecutive lock-out (1-based)."""
        return min(self.max_cooldown, self.cooldown * self.growth ** max(0, lockouts - 1))

    def state(self, subject: str, conn=None) -> AttemptState:
        c = conn or self.store._c()
        row = c.execute("SELECT failures, lockouts, locked_at, locked_until, last_attempt "
                        "FROM attempts WHERE subject = ?", (subject,)).fetchone()
        if row is None:
            return AttemptState(subject)
        return AttemptState(subject, int(row[0] or 0), int(row[1] or 0), row[2], row[3], row[4])

    @staticmethod
    def _guards(subject: str) -> tuple:
        """The counters whose lock-out refuses an attempt for ``subject``."""
        return (subject,) if subject == IDENTIFY_SUBJECT else (IDENTIFY_SUBJECT, subject)

    def _refuse_if_locked(self, subjects, now: float, conn=None) -> None:
        for s in subjects:
            st = self.state(s, conn)
            left = st.remaining(now)
            if left > 0:
                raise LockedOut(s, left, self.max_failures * max(1, st.lockouts))

    def check(self, subject: str) -> AttemptState:
        """Raise :class:`LockedOut` while ``subject`` (or the device) is cooling down; else
        the subject's state."""
        self._refuse_if_locked(self._guards(subject), self.clock())
        return self.state(subject)

    def _write(self, c, st: AttemptState) -> None:
        c.execute("INSERT OR REPLACE INTO attempts(subject, failures, lockouts, locked_at, "
                  "locked_until, last_attempt) VALUES (?, ?, ?, ?, ?, ?)",
                  (st.subject, st.failures, st.lockouts, st.locked_at, st.locked_until,
                   st.last_attempt))

    def _count(self, c, subject: str, accepted: bool, now: float) -> AttemptState:
        st = self.state(subject, c)
        if accepted:
            st = AttemptState(subject, last_attempt=now)
        else:
            st.failures += 1
            st.last_attempt = now
            if st.failures >= self.max_failures:
                st.lockouts += 1
                st.failures = 0
                st.locked_at = now
                st.locked_until = now + self.period(st.lockouts)
        self._write(c, st)
        return st

    def record(self, subject: str, accepted: bool) -> AttemptState:
        """Record one 1:1 attempt of ``subject`` durably (one transaction); its new state.

        Raises :class:`LockedOut` (recording nothing) when the subject or the device is
        locked out.
        """
        now = self.clock()
        with self.store.transaction() as c:
            self._refuse_if_locked(self._guards(subject), now, c)
            return self._count(c, subject, accepted, now)

    def record_identify(self, matched_user: str, accepted: bool) -> tuple[AttemptState, bool]:
        """Record one identify-mode attempt whose best match is ``matched_user``.

        Returns (identify-mode state, accepted). A match (``accepted``) to a user who is
        locked out is refused and counted as a rejection; an accepted match also clears that
        user's failure count. Raises :class:`LockedOut` (recording nothing) while identify
        mode is locked out. One transaction.
        """
        now = self.clock()
        with self.store.transaction() as c:
            self._refuse_if_locked((IDENTIFY_SUBJECT,), now, c)
            if accepted and self.state(matched_user, c).remaining(now) > 0:
                accepted = False
            st = self._count(c, IDENTIFY_SUBJECT, accepted, now)
            if accepted:
                self._count(c, matched_user, True, now)
            return st, accepted

    def reset(self, subject: str) -> None:
        """Clear ``subject``'s counters and lock-out (an administrator's action)."""
        with self.store.transaction() as c:
            c.execute("DELETE FROM attempts WHERE subject = ?", (subject,))
