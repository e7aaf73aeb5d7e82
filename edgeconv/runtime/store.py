"""Template store: enrolled face templates in one SQLite file (standard library only).

What is stored, per user: the L2-normalised template embedding (float32), the
identity of the model that made it (SHA-256 of the model file and its name), the
number of images averaged and timestamps.  Never images.  The same file holds the
lock-out state of :mod:`edgeconv.runtime.policy`.

Safety properties:

* the file is created with owner-only permissions (0600) and, when the store creates
  its folder, the folder with 0700; SQLite's ``-wal``/``-shm`` files inherit the
  database file's permissions;
* every write is one transaction in WAL mode with ``synchronous=FULL``: a crash or a
  power cut loses at most the write in progress, never anything already committed;
* removing or replacing a template overwrites it (``secure_delete``) and truncates the
  WAL, so its bytes do not linger in the files;
* opening checks the SQLite header, ``PRAGMA integrity_check`` and the schema, so a
  corrupt, foreign or truncated file gives a clear :class:`StoreError`;
* a template made by another model is never compared (:class:`ModelMismatch`).

Templates are **not encrypted**: anyone who can read the file can read them (see
docs/unlock.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import stat
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.closing import Closing

SCHEMA_VERSION = 1
APP_ID = "edgeconv-templates"
#: ``PRAGMA application_id`` of edgeconv template databases ("EdgC").
SQLITE_APPLICATION_ID = 0x45646743
DB_FILENAME = "templates.db"
HOME_ENV = "EDGECONV_HOME"
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_USER_LEN = 128
#: extra tries of a write transaction after SQLite's own busy timeout has run out
BUSY_RETRIES = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    user        TEXT PRIMARY KEY,
    model_hash  TEXT NOT NULL,
    model_name  TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    embedding   BLOB NOT NULL,
    num_images  INTEGER NOT NULL,
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    subject       TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL DEFAULT 0,
    lockouts      INTEGER NOT NULL DEFAULT 0,
    locked_at     REAL,
    locked_until  REAL,
    last_attempt  REAL
);
"""
_TABLES = {
    "meta": {"key", "value"},
    "templates": {"user", "model_hash", "model_name", "dim", "embedding", "num_images",
                  "created", "updated"},
    "attempts": {"subject", "failures", "lockouts", "locked_at", "locked_until",
                 "last_attempt"},
}


class StoreError(EdgeconvError):
    """The template database is missing, corrupt, foreign or unusable."""


class ModelMismatch(EdgeconvError):
    """A template was made by a different model than the one being used."""


class UnknownUser(EdgeconvError):
    """No template is enrolled under that name."""


@dataclass
class Template:
    user: str
    model_hash: str
    model_name: str
    embedding: np.ndarray
    num_images: int
    created: float
    updated: float

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[0])


def default_db_path() -> Path:
    """``$EDGECONV_HOME/templates.db``, else ``$XDG_DATA_HOME/edgeconv/templates.db``,
    else ``~/.local/share/edgeconv/templates.db``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / DB_FILENAME
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "edgeconv" / DB_FILENAME


#: Unicode categories refused in user names: controls, format characters (zero-width
#: joiners and spaces, bidi overrides and isolates, BOM), surrogates, private-use and
#: unassigned code points, line and paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_user_name(user: str) -> str:
    """The canonical form of a user name (Unicode NFC), or :class:`EdgeconvError`.

    Refused: empty names, leading/trailing white space, any white space but the plain space,
    and the characters of :data:`_REFUSED_CATEGORIES`, so that two names that look the same
    in ``users list`` cannot both be enrolled. (Look-alike letters of different scripts, such
    as Latin "a" and Cyrillic "а", are distinct names and are not refused.)
    """
    import unicodedata

    if not isinstance(user, str):
        raise EdgeconvError("user name must be text")
    name = unicodedata.normalize("NFC", user)
    if not name.strip():
        raise EdgeconvError("user name must not be empty")
    if len(name) > MAX_USER_LEN:
        raise EdgeconvError(f"user name longer than {MAX_USER_LEN} characters")
    for ch in name:
        cat = unicodedata.category(ch)
        if cat in _REFUSED_CATEGORIES or (cat == "Zs" and ch != " ") or \
                (ch.isspace() and ch != " "):
            what = unicodedata.name(ch, f"U+{ord(ch):04X}")
            raise EdgeconvError(f"user name must not contain {what} (U+{ord(ch):04X}): "
                                "control, invisible and direction characters are refused")
    if name != name.strip():
        raise EdgeconvError("user name must not start or end with a space")
    return name


def _key(user) -> str:
    """Lookup form of a name: NFC, not validated (so a legacy odd name can still be removed)."""
    import unicodedata

    return unicodedata.normalize("NFC", str(user))


def _short(h: str) -> str:
    return h[:12]


class TemplateStore(Closing):
    """Open (``create=True``: create if missing) the template database at ``path``."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True,
                 timeout: float = 10.0):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.conn: sqlite3.Connection | None = None
        self.timeout = float(timeout)
        self._loose_mode = None
        self._file_stat = None
        try:
            st = os.lstat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot reach the template database "
                             f"({exc.strerror or exc}): check that you may enter its folder") \
                from None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{self.path}: is a symbolic link; give the template database's "
                             "real path (a link could point the store anywhere)")
        if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{self.path}: not a regular file (a FIFO, socket or device), "
                             "not a template database")
        if st is not None:
            self._check_existing_file()
        elif not create:
            raise StoreError(f"{self.path}: no template database (enrol a user first)")
        else:
            self._create_file(timeout)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA secure_delete = ON")  # removed templates are zeroed
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.journal_mode = str(mode).lower()
            self._check_integrity()
            self._check_schema()
        except sqlite3.OperationalError as exc:
            self.close()
            raise self._sql_error(exc) from None
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path}: not a usable template database ({exc}); "
                             "move it away to start a new one") from None
        except BaseException:
            self.close()
            raise
        if self._loose_mode is not None:
            warnings.warn(f"{self.path}: template database is accessible to other users "
                          f"(mode {stat.filemode(self._loose_mode)}); chmod 600 it",
                          stacklevel=2)

    # -- file handling ---------------------------------------------------------------
    def _create_file(self, timeout: float) -> None:
        """Create the database complete with its schema under a temporary name, then link it
        into place (never replacing anything): a store file is never seen half-made, so an
        empty file is never one of ours."""
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
            except OSError as exc:
                raise StoreError(f"{parent}: cannot create the template folder "
                                 f"({exc.strerror or exc})") from None
        tmp = parent / f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
            conn = sqlite3.connect(str(tmp), timeout=timeout, isolation_level=None)
            try:
                self.conn = conn
                self._init_schema()
            finally:
                self.conn = None
                conn.close()
            try:
                os.link(tmp, self.path)     # fails if the path exists: nothing is replaced
            except FileExistsError:
                pass                        # another process created it first: fine
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the template database "
                             f"({exc.strerror or exc})") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _check_existing_file(self) -> None:
        p = self.path
        if p.is_dir():
            raise StoreError(f"{p}: is a directory, not a template database")
        try:
            with open(p, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
            st = p.stat()
        except OSError as exc:
            raise StoreError(f"{p}: cannot read the template database ({exc.strerror or exc})") \
                from None
        if st.st_size == 0:
            raise StoreError(f"{p}: an empty file, not a template database; edgeconv does not "
                             "take over files it did not create: remove it to start a new one")
        if head != SQLITE_MAGIC:
            raise StoreError(f"{p}: not a template database (not an SQLite file)")
        if st.st_size < 512:
            raise StoreError(f"{p}: truncated template database ({st.st_size} bytes)")
        self._loose_mode = st.st_mode if st.st_mode & 0o077 else None
        self._file_stat = st

    def check_trusted(self) -> None:
        """Refuse (:class:`StoreError`) a database that someone else could have written: a
        file owned by another user (root excepted) or writable by everyone, or in a folder
        writable by everyone without the sticky bit. ``unlock`` trusts the store's templates
        and lock-out counters, so it takes such a store on these terms only (as ssh takes
        keys)."""
        st = self._file_stat or os.stat(self.path)
        me = os.geteuid()
        if st.st_uid not in (me, 0):
            raise StoreError(f"{self.path}: the template database belongs to another user "
                             f"(uid {st.st_uid}); unlock refuses a store it does not own")
        if st.st_mode & 0o002:
            raise StoreError(f"{self.path}: the template database is writable by every user "
                             f"(mode {stat.filemode(st.st_mode)}); chmod 600 it before unlock "
                             "uses it")
        parent = os.stat(self.path.parent)
        if parent.st_mode & 0o002 and not parent.st_mode & stat.S_ISVTX:
            raise StoreError(f"{self.path.parent}: the template database's folder is writable "
                             "by every user (anyone could replace the store); chmod o-w it")

    def _sql_error(self, exc: sqlite3.Error) -> StoreError:
        """One line for an SQLite failure: read-only, busy, unopenable or unusable."""
        msg = str(exc)
        low = msg.lower()
        if "readonly" in low or "read-only" in low:
            return StoreError(f"{self.path}: the template database is read-only (its or its "
                              "folder's permissions, an immutable file or a read-only file "
                              "system); nothing was changed")
        if "locked" in low or "busy" in low:
            return StoreError(f"{self.path}: the template database is busy: another process "
                              f"has held it locked for more than {self.timeout:g} s; nothing "
                              "was changed, try again")
        if "unable to open" in low or "disk i/o" in low:
            return StoreError(f"{self.path}: cannot open the template database ({msg}): check "
                              "that its folder exists and you may enter and write it")
        return StoreError(f"{self.path}: template database error ({msg})")

    def _init_schema(self) -> None:
        with self.transaction() as c:
            if c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                c.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                              [("app", APP_ID), ("schema_version", str(SCHEMA_VERSION)),
                               ("created", repr(time.time()))])

    def _check_integrity(self) -> None:
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            detail = "; ".join(rows[:3])
            raise StoreError(f"{self.path}: template database is corrupt (integrity_check: "
                             f"{detail}); restore a backup or move it away and re-enrol")

    def _check_schema(self) -> None:
        c = self.conn
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not set(_TABLES) <= tables:
            raise StoreError(f"{self.path}: an SQLite database but not an edgeconv template "
                             f"database (tables: {', '.join(sorted(tables)) or 'none'})")
        for table, cols in _TABLES.items():
            have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            if not cols <= have:
                raise StoreError(f"{self.path}: table {table!r} lacks columns "
                                 f"{sorted(cols - have)}; not an edgeconv template database")
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != APP_ID:
            raise StoreError(f"{self.path}: not an edgeconv template database "
                             f"(app {meta.get('app')!r})")
        try:
            version = int(meta.get("schema_version", "0"))
        except ValueError:
            version = -1
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: template database schema version {version} is not "
                             f"supported (this edgeconv reads version {SCHEMA_VERSION})")

    # -- transactions ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception).

        A database locked by another process is waited for (SQLite's busy timeout, then
        :data:`BUSY_RETRIES` more tries); an SQLite failure becomes one :class:`StoreError`.
        """
        c = self._c()
        for attempt in range(BUSY_RETRIES + 1):
            try:
                c.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                low = str(exc).lower()
                if attempt < BUSY_RETRIES and ("locked" in low or "busy" in low):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._sql_error(exc) from None
        try:
            yield c
            c.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._sql_error(exc) from None
            raise

    def _c(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StoreError(f"{self.path}: template store is closed")
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None


    # -- templates -------------------------------------------------------------------
    def enroll(self, user: str, embedding: np.ndarray, model_hash: str, model_name: str,
               num_images: int = 1, replace: bool = False) -> Template:
        """Store ``user``'s template (L2-normalised here); no overwrite unless ``replace``."""
        user = check_user_name(user)
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if e.size == 0 or not np.isfinite(e).all():
            raise EdgeconvError("template embedding must be a non-empty finite vector")
        norm = float(np.linalg.norm(e))
        if norm <= 1e-12:
            raise EdgeconvError("template embedding is zero")
        e = (e / norm).astype("<f4")
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT created, model_name FROM templates WHERE user = ?",
                            (user,)).fetchone()
            if row is not None and not replace:
                raise EdgeconvError(f"user {user!r} is already enrolled (model {row[1]}); "
                                    "use --replace to overwrite the template")
            created = row[0] if row is not None else now
            c.execute("INSERT OR REPLACE INTO templates(user, model_hash, model_name, dim, "
                      "embedding, num_images, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (user, str(model_hash), str(model_name), int(e.size), e.tobytes(),
                       int(num_images), created, now))
            if row is None:  # a new user starts with a clean counter; a re-enrolment keeps it
                c.execute("DELETE FROM attempts WHERE subject = ?", (user,))
        if row is not None:
            self._scrub_wal()
        return Template(user, model_hash, model_name, e.astype(np.float32), int(num_images),
                        created, now)

    def _row_to_template(self, row) -> Template:
        user, model_hash, model_name, dim, blob, num_images, created, updated = row
        if not isinstance(blob, (bytes, bytearray)) or len(blob) != int(dim) * 4 or dim <= 0:
            raise StoreError(f"{self.path}: template of {user!r} is damaged (size mismatch); "
                             "re-enrol the user")
        e = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if not np.isfinite(e).all() or not math.isclose(float(np.linalg.norm(e)), 1.0,
                                                        rel_tol=1e-3):
            raise StoreError(f"{self.path}: template of {user!r} is damaged (not a unit "
                             "vector); re-enrol the user")
        return Template(user, model_hash, model_name, e, int(num_images), float(created),
                        float(updated))

    _COLS = "user, model_hash, model_name, dim, embedding, num_images, created, updated"

    def get(self, user: str) -> Template:
        row = self._c().execute(f"SELECT {self._COLS} FROM templates WHERE user = ?",
                                (_key(user),)).fetchone()
        if row is None:
            raise UnknownUser(f"no user {user!r} is enrolled in {self.path}")
        return self._row_to_template(row)

    def get_for_model(self, user: str, model_hash: str, model_name: str = "") -> Template:
        """``user``'s template, refusing (:class:`ModelMismatch`) one made by another model."""
        t = self.get(user)
        if t.model_hash != model_hash:
            this = f"{model_name} " if model_name else ""
            raise ModelMismatch(
                f"user {user!r} was enrolled with model {t.model_name} (sha256 "
                f"{_short(t.model_hash)}), not with this model {this}(sha256 "
                f"{_short(model_hash)}); templates of different models cannot be compared: "
                "use the enrolment model or re-enrol with --replace")
        return t

    def templates(self, model_hash: str | None = None) -> list[Template]:
        sql = f"SELECT {self._COLS} FROM templates"
        args: tuple = ()
        if model_hash is not None:
            sql += " WHERE model_hash = ?"
            args = (model_hash,)
        rows = self._c().execute(sql + " ORDER BY user", args).fetchall()
        return [self._row_to_template(r) for r in rows]

    def users(self) -> list[dict]:
        """Enrolled users with model and lock-out state (no embeddings)."""
        rows = self._c().execute(
            "SELECT t.user, t.model_name, t.model_hash, t.dim, t.num_images, t.created, "
            "t.updated, a.failures, a.lockouts, a.locked_until FROM templates t "
            "LEFT JOIN attempts a ON a.subject = t.user ORDER BY t.user").fetchall()
        keys = ("user", "model_name", "model_hash", "dim", "num_images", "created", "updated",
                "failures", "lockouts", "locked_until")
        return [dict(zip(keys, r)) for r in rows]

    def remove(self, user: str) -> None:
        with self.transaction() as c:
            user = _key(user)
            cur = c.execute("DELETE FROM templates WHERE user = ?", (user,))
            if cur.rowcount == 0:
                raise UnknownUser(f"no user {user!r} is enrolled in {self.path}")
            c.execute("DELETE FROM attempts WHERE subject = ?", (user,))
        self._scrub_wal()

    def _scrub_wal(self) -> None:
        """Copy the WAL into the database and truncate it, so that no old page image
        with a removed or replaced template lingers in the ``-wal`` file."""
        with contextlib.suppress(sqlite3.Error):
            self._c().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def __contains__(self, user: str) -> bool:
        return self._c().execute("SELECT 1 FROM templates WHERE user = ?",
                                 (_key(user),)).fetchone() is not None

    def __len__(self) -> int:
        return self._c().execute("SELECT count(*) FROM templates").fetchone()[0]

    def integrity_check(self) -> list[str]:
        return [r[0] for r in self._c().execute("PRAGMA integrity_check").fetchall()]
