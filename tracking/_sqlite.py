"""SQLite stores (MLflow's and Optuna's) under concurrent use: one creator, bounded retries.

MLflow and Optuna create (and migrate) a SQLite store's schema the first time a process opens
it, with no guard against a second process doing the same at that moment: two commands started
together on a new ``mlflow.db`` die in table creation or in alembic's migrations.
:func:`ready_store` and :func:`ready_optuna_storage` do that first open under a lock beside the
file (``<db>.lock``, :class:`filelock.FileLock`), so one process creates or migrates the schema
and the others wait for it and then open a ready store.  Each process does it once per URI;
other URIs (``http://``, ``postgresql://``) are left alone.

A new file is built aside (``.<db>.<pid>.creating``) and linked into place only when complete,
so a process that does not take the lock (``mlflow ui``, a user's script) finds either no file
or a ready one.  When such a process got there first and is still creating the schema, tagtune
waits until it is done (or its file has been still, with no write under way, for 15 s).

After creation, a write that SQLite refuses with "database is locked" (another process holds
the file's write lock past SQLite's busy timeout) is retried with backoff by
:func:`retry_locked` for ``TAGTUNE_SQLITE_WAIT`` seconds (default 60); past that,
:class:`StoreLockedError` (an :class:`InputError`: exit code 2) names the store and suggests a
tracking server.  :func:`locked_message` says the same for such an error raised anywhere else.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tagtune.errors import InputError

T = TypeVar("T")

LOCK_WAIT_SECONDS = 300.0  # creating or migrating a schema takes seconds; a big migration, longer
LOCKED_WAIT_SECONDS = 60.0  # TAGTUNE_SQLITE_WAIT: retries of a write SQLite says is locked
OPTUNA_BUSY_SECONDS = 30.0  # SQLite's own busy timeout for Optuna's engine (pysqlite's default: 5)
_LOCKED_WORDS = ("database is locked", "database table is locked")
SERVER_HINT = "for a team writing at once use a tracking server (`tagtune server`)"

_ready: set[tuple[str, str]] = set()  # (kind, URI) readied by this process
_optuna: dict[str, Any] = {}  # URI -> its RDBStorage, made once per process
_guard = threading.Lock()


class StoreLockedError(InputError):
    """A SQLite store stayed locked by other processes past the retries."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (absolute, ``sqlite:////abs`` or relative to the
    working directory), else None (a server, an in-memory database)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest).resolve()


def _lock_for(path: Path) -> Any:
    from filelock import FileLock

    return FileLock(f"{path}.lock", timeout=float(os.environ.get("TAGTUNE_STORE_LOCK_WAIT", LOCK_WAIT_SECONDS)))


def _under_lock(kind: str, uri: str, path: Path, make: Callable[[], T]) -> T:
    """``make()`` (the first open of the store at ``path``) while holding the lock beside it."""
    from filelock import Timeout

    lock = _lock_for(path)
    try:
        with lock:
            return make()
    except Timeout:
        raise InputError(
            f"{kind} store {uri}: another process has held {lock.lock_file} for over {lock.timeout:.0f} s "
            "while creating or upgrading it; wait for it to finish, or stop it"
        ) from None


CREATOR_QUIET_SECONDS = 15.0  # a half-made store unchanged and unlocked for this long is at rest
CREATOR_WAIT_SECONDS = 120.0  # the longest wait for another program creating the schema


#: The loggers that say "Creating initial MLflow database tables..." and each migration at INFO.
SCHEMA_LOGGERS = ("mlflow.store.db.utils", "alembic")


@contextmanager
def _quiet_schema_logs() -> Iterator[None]:
    """Creating or migrating a store's tables logs nothing below WARNING (MLflow sets its own
    loggers to INFO when it is imported, so this is done here, around the work)."""
    loggers = [logging.getLogger(name) for name in SCHEMA_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _build_mlflow(uri: str, keep: bool = False) -> None:
    """Open ``uri`` as MLflow's tracking and registry stores: what creates the tables, runs the
    migrations and adds the Default experiment (no artifact folder is made).  Their engines are
    disposed unless ``keep`` (MLflow caches them per URI, and the client reuses them)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    stores = ((SqlAlchemyStore, (uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)), (RegistryStore, (uri,)))
    with _quiet_schema_logs():
        for store_cls, args in stores:
            store_cls(*args)
            if not keep:
                engine = store_cls._engine_map.pop(uri, None)
                if engine is not None:
                    engine.dispose()


def _build_optuna(url: str) -> None:
    import optuna

    with _quiet_schema_logs():
        optuna.storages.RDBStorage(url).engine.dispose()


def _create_aside(path: Path, build: Callable[[str], None]) -> None:
    """Build a new store at a private name beside ``path`` and link it into place when complete
    (the link fails, and the copy is dropped, when another program made ``path`` meanwhile)."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.creating")
    for leftover in (aside, aside.with_name(aside.name + "-journal")):
        leftover.unlink(missing_ok=True)
    try:
        build(f"sqlite:///{aside}")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another program created it: the caller waits for it below
    finally:
        aside.unlink(missing_ok=True)


def _mlflow_complete(uri: str) -> bool:
    """Whether the MLflow store ``uri`` has every table at the newest schema revision and its
    Default experiment (read without changing anything; False when a half-made schema fails
    the reads)."""
    try:
        return _mlflow_complete_or_raise(uri)
    except Exception:  # noqa: BLE001 - e.g. no such table yet: not complete
        return False


def _mlflow_complete_or_raise(uri: str) -> bool:
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist, _get_latest_schema_revision, _get_schema_version

    engine = sqlalchemy.create_engine(uri, connect_args={"timeout": 20})
    try:
        if not _all_tables_exist(engine) or _get_schema_version(engine) != _get_latest_schema_revision():
            return False
        with engine.connect() as connection:
            row = connection.execute(sqlalchemy.text("SELECT 1 FROM experiments WHERE experiment_id = 0")).first()
        return row is not None
    finally:
        engine.dispose()


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _wait_for_creator(path: Path, complete: Callable[[], bool]) -> None:
    """Wait while another program (one that does not take the lock) creates the store at
    ``path``: until it is ``complete()``, or the file has not changed and had no journal (no
    write under way) for ``CREATOR_QUIET_SECONDS`` (an older store at rest, or a creator that
    stopped), at most ``CREATOR_WAIT_SECONDS``."""
    deadline = time.monotonic() + CREATOR_WAIT_SECONDS
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        if complete():
            return
        journal = _signature(path.with_name(path.name + "-journal"))  # there while a write is under way
        now = (_signature(path), journal)
        if now != last or journal is not None:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= CREATOR_QUIET_SECONDS:
            return
        time.sleep(0.2)


def ready_store(uri: str) -> str:
    """``uri`` with its MLflow schema created or migrated (tracking and model-registry tables),
    by one process at a time for a SQLite file; other URIs are returned untouched.

    The second of two commands opening a new store waits here for the first to finish creating
    it, then finds every table in place.  Once per process per URI."""
    path = sqlite_path(uri)
    if path is None:
        return uri
    with _guard:
        if ("mlflow", uri) in _ready:
            return uri
        if not path.parent.is_dir():
            return uri  # nothing to lock beside; the caller says what is wrong with the folder

        def make() -> None:
            if not path.exists():
                _create_aside(path, _build_mlflow)
            if not _mlflow_complete(uri):  # another program is creating it (or it is an older store)
                _wait_for_creator(path, lambda: _mlflow_complete(uri))
            _build_mlflow(uri, keep=True)  # an old store is migrated here; a ready one only checked

        retry_locked(lambda: _under_lock("MLflow", uri, path, make), uri)
        _ready.add(("mlflow", uri))
    return uri


def ready_optuna_storage(url: str) -> Any:
    """An :class:`optuna.storages.RDBStorage` on ``url``; a SQLite file's tables are created
    (or checked) by one process at a time, and its engine waits up to 30 s on SQLite's lock
    (pysqlite's default is 5 s).  One storage per process per URL."""
    import optuna

    path = sqlite_path(url)
    if path is None:
        return optuna.storages.RDBStorage(url)
    with _guard:
        if url not in _optuna:
            kwargs = {"connect_args": {"timeout": OPTUNA_BUSY_SECONDS}}

            def make() -> Any:
                if not path.exists():
                    _create_aside(path, _build_optuna)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)

            _optuna[url] = retry_locked(lambda: _under_lock("Optuna", url, path, make), url)
            _ready.add(("optuna", url))
    return _optuna[url]


def is_locked(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is SQLite's "database is locked"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StoreLockedError):
            return False  # already past the retries: not to be retried again
        seen.add(id(exc))
        if any(word in str(exc)[:100_000] for word in _LOCKED_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def locked_line(uri: str, waited: float | None = None) -> str:
    """The one line for a SQLite store that stayed locked."""
    after = f" after {waited:.0f} s of retries" if waited is not None else ""
    return (
        f"SQLite store {uri} stayed locked by other processes{after} (SQLite: database is locked); "
        f"a file store takes one writer per search and readers at any time, {SERVER_HINT}"
    )


def retry_locked(call: Callable[[], T], uri: str, wait: float | None = None) -> T:
    """``call()``, retried with backoff (0.05 s doubling to 2 s, jittered) while SQLite says the
    database is locked, for up to ``wait`` seconds (``TAGTUNE_SQLITE_WAIT``, default 60);
    past it :class:`StoreLockedError` naming ``uri``.  Other errors are raised at once.

    Only for calls that are one transaction each (MLflow's client calls are), so a refused one
    changed nothing and may be sent again."""
    if sqlite_path(uri) is None:
        return call()
    wait = float(os.environ.get("TAGTUNE_SQLITE_WAIT", LOCKED_WAIT_SECONDS)) if wait is None else wait
    start = time.monotonic()
    delay = 0.05
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_locked(exc):
                raise
            waited = time.monotonic() - start
            if waited >= wait:
                raise StoreLockedError(locked_line(uri, waited)) from None
            time.sleep(min(delay * (0.5 + random.random()), max(0.0, wait - waited)))
            delay = min(delay * 2, 2.0)


def locked_message(exc: BaseException) -> str | None:
    """One line for a "database is locked" error that escaped the retries (raised by MLflow or
    Optuna outside tagtune's own calls), naming the SQLite stores this process opened; else None."""
    if not is_locked(exc):
        return None
    stores = sorted({uri for _, uri in _ready}) or ["a SQLite store"]
    return locked_line(" / ".join(stores))
