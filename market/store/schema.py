"""The versioned schema and its upgrade path.

Each migration is ``(version, [DDL, ...])``. ``upgrade`` applies, in order, every migration above
the stored version, each in its own transaction, so a later release adds a migration instead of
editing the tables of this one and existing data is kept.

Table map (paper, spec 4a-e):
  accounts    4a  community members, balance in cents (and cents reserved by open leases),
                  password hash, API token hash, the starting grant waiting for confirmation
  jobs        4b  the job's source code, owner, name, price (cents per second), status, and the
                  sequence number of its committed state
  states      4c  every committed state of a job (the frozen bytes), in sequence, with the
                  envelope's digest and its payload's sha256
  state_chunks    the bytes of a state over one chunk (1 MiB), a row per chunk, by lease
  leases      4c  each check-out of a state to a client (the paper's "dispatch", the report's
                  <dispatch>): checked out, deadline, checked in, status, the price it pays
  clients     4d  computation clients, each linked to an account (and its open test job and
                  how many test jobs it had in the current probe interval)
  speeds      4e  measured client speeds and the time they were measured
  ledger          double-entry money movements (grants have no debit account)
  web_sessions    web log-in sessions (token hash, CSRF token, expiry)
  secrets         the database's own random secrets (the probe secret)
  batches         parameter sweeps: one module, function and price, many jobs (jobs.batch_id)
  frontends       every ``twistd market`` process on this database and its heartbeat
  matcher_role    which front end runs the one pooling window, until when (one row)
  work_requests   requests for work put by front ends that do not hold the matcher role
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from market.core.errors import MarketError
from market.store.db import marks
from market.store.dialect import Dialect
from market.tasklet import envelope


@dataclass(frozen=True)
class Rewrite:
    """A migration step that rewrites data with Python (``run(tx)``), in the migration's transaction."""

    run: Callable[[Any], None]


# a statement is DDL text, a function of the dialect where the two differ, or a data rewrite
Statement = str | Callable[[Dialect], str] | Rewrite
Migration = tuple[int, Sequence[Statement]]

V1: list[Statement] = [
    """CREATE TABLE accounts (
        id {pk},
        name VARCHAR(64) NOT NULL UNIQUE,
        email VARCHAR(255) NOT NULL,
        password_hash VARCHAR(255) NOT NULL DEFAULT '',
        confirmed INTEGER NOT NULL DEFAULT 0,
        confirm_token_hash CHAR(64) NULL,
        api_token_hash CHAR(64) NULL,
        balance {bigint} NOT NULL DEFAULT 0,
        created_at {double} NOT NULL
    ) {engine}""",
    "CREATE INDEX accounts_api_token ON accounts (api_token_hash)",
    """CREATE TABLE ledger (
        id {pk},
        at {double} NOT NULL,
        debit_account {bigint} NULL,
        credit_account {bigint} NOT NULL,
        amount {bigint} NOT NULL,
        kind VARCHAR(16) NOT NULL,
        dispatch_id {bigint} NULL UNIQUE,
        memo VARCHAR(255) NOT NULL DEFAULT ''
    ) {engine}""",
    "CREATE INDEX ledger_debit ON ledger (debit_account)",
    "CREATE INDEX ledger_credit ON ledger (credit_account)",
    """CREATE TABLE clients (
        id {pk},
        account_id {bigint} NOT NULL,
        name VARCHAR(64) NOT NULL,
        token_hash CHAR(64) NOT NULL,
        created_at {double} NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'active',
        suspect INTEGER NOT NULL DEFAULT 0,
        sandbox_level VARCHAR(16) NOT NULL DEFAULT 'unknown',
        last_seen {double} NULL,
        UNIQUE (account_id, name)
    ) {engine}""",
    """CREATE TABLE speeds (
        id {pk},
        client_id {bigint} NOT NULL,
        speed {double} NOT NULL,
        operations {bigint} NOT NULL,
        seconds {double} NOT NULL,
        measured_at {double} NOT NULL
    ) {engine}""",
    "CREATE INDEX speeds_client ON speeds (client_id, measured_at)",
    """CREATE TABLE jobs (
        id {pk},
        account_id {bigint} NULL,
        kind VARCHAR(8) NOT NULL DEFAULT 'job',
        name VARCHAR(128) NOT NULL,
        price {bigint} NOT NULL,
        source {text} NOT NULL,
        source_sha256 CHAR(64) NOT NULL,
        entry VARCHAR(128) NOT NULL,
        spec {text} NULL,
        status VARCHAR(16) NOT NULL,
        submitted_at {double} NOT NULL,
        executed_ms {bigint} NOT NULL DEFAULT 0,
        slices INTEGER NOT NULL DEFAULT 0,
        progress {double} NULL,
        finished_at {double} NULL,
        outcome VARCHAR(16) NULL,
        result {blob} NULL,
        error {text} NULL,
        probe_client_id {bigint} NULL,
        probe_size INTEGER NULL
    ) {engine}""",
    "CREATE INDEX jobs_ready ON jobs (status, price, submitted_at, id)",
    "CREATE INDEX jobs_owner ON jobs (account_id)",
    """CREATE TABLE states (
        id {pk},
        job_id {bigint} NOT NULL,
        seq INTEGER NOT NULL,
        data {blob} NOT NULL,
        status VARCHAR(16) NOT NULL,
        client_id {bigint} NULL,
        dispatch_id {bigint} NULL,
        created_at {double} NOT NULL,
        UNIQUE (job_id, seq)
    ) {engine}""",
    """CREATE TABLE dispatches (
        id {pk},
        job_id {bigint} NOT NULL,
        state_id {bigint} NOT NULL,
        client_id {bigint} NOT NULL,
        checked_out_at {double} NOT NULL,
        granted_seconds {double} NOT NULL,
        deadline {double} NOT NULL,
        checked_in_at {double} NULL,
        status VARCHAR(16) NOT NULL,
        slice_status VARCHAR(16) NULL,
        accepted_ms {bigint} NULL,
        paid {bigint} NOT NULL DEFAULT 0,
        reserved {bigint} NOT NULL DEFAULT 0,
        new_state_id {bigint} NULL
    ) {engine}""",
    "CREATE INDEX dispatches_open ON dispatches (status, deadline)",
    "CREATE INDEX dispatches_job ON dispatches (job_id)",
    "CREATE INDEX dispatches_client ON dispatches (client_id)",
    """CREATE TABLE web_sessions (
        token_hash CHAR(64) NOT NULL PRIMARY KEY,
        account_id {bigint} NOT NULL,
        csrf CHAR(64) NOT NULL,
        created_at {double} NOT NULL,
        expires_at {double} NOT NULL
    ) {engine}""",
]

# The dispatcher's hot paths without scans of a job's or an owner's history: money promised to
# open leases is kept on the account (not summed over dispatches per window); a job knows the
# sequence number of its committed state, so (job_id, seq) finds it by the unique key; a job's
# open lease is found by (job_id, status). Both lookups stay exact however many slices a job had.
V2: list[Statement] = [
    "ALTER TABLE accounts ADD COLUMN reserved {bigint} NOT NULL DEFAULT 0",
    """UPDATE accounts SET reserved = COALESCE((SELECT SUM(d.reserved) FROM dispatches d JOIN jobs j
        ON j.id = d.job_id WHERE d.status = 'out' AND j.account_id = accounts.id), 0)""",
    "ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    """UPDATE jobs SET seq = COALESCE((SELECT s.seq FROM states s WHERE s.job_id = jobs.id
        AND s.status = 'committed'), 0)""",
    lambda dialect: dialect.drop_index("dispatches_job", "dispatches"),
    "CREATE INDEX dispatches_job ON dispatches (job_id, status)",
]

# One name for one thing: the paper's "dispatch" (a state checked out to a client) is a lease
# everywhere but the report's published element. Indexes are recreated under the new name.
V3: list[Statement] = [
    lambda dialect: dialect.drop_index("dispatches_open", "dispatches"),
    lambda dialect: dialect.drop_index("dispatches_job", "dispatches"),
    lambda dialect: dialect.drop_index("dispatches_client", "dispatches"),
    "ALTER TABLE dispatches RENAME TO leases",
    "ALTER TABLE states RENAME COLUMN dispatch_id TO lease_id",
    "ALTER TABLE ledger RENAME COLUMN dispatch_id TO lease_id",
    "CREATE INDEX leases_open ON leases (status, deadline)",
    "CREATE INDEX leases_job ON leases (job_id, status)",
    "CREATE INDEX leases_client ON leases (client_id)",
]

# What strangers cannot abuse: a signed-up account's starting grant waits for its confirmation
# (pending_grant), confirmation links are found by an index rather than a scan, and each client
# carries its open test job and how many it had in the current probe interval, so a request can
# refuse another one by reading a single row.
V4: list[Statement] = [
    "ALTER TABLE accounts ADD COLUMN pending_grant {bigint} NOT NULL DEFAULT 0",
    "CREATE INDEX accounts_confirm ON accounts (confirm_token_hash)",
    "ALTER TABLE clients ADD COLUMN test_job_id {bigint} NULL",
    "ALTER TABLE clients ADD COLUMN test_jobs INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE clients ADD COLUMN test_jobs_since {double} NULL",
]


def _states_to_v2(tx, chunk: int = 64) -> None:
    """Rewrite every stored state from envelope format 1 to 2: the header names its job, its parent
    (the previous stored state of the job, by seq; none for the first) and interpreter "unknown",
    and the digest is recomputed, so the chain of parents is the chain of new digests. Fills
    ``digest`` and ``payload_sha256``. A few states at a time: states may be megabytes each.
    Bytes that are no version-1 envelope are kept as they are (their payload hash stays unknown)."""
    ids = [(r["id"], r["job_id"]) for r in tx.all("SELECT id, job_id FROM states ORDER BY job_id, seq")]
    previous: tuple[int, str] | None = None  # (job id, digest of its last rewritten state)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = {
            r["id"]: r
            for r in tx.all(f"SELECT id, data FROM states WHERE id IN {marks(len(part))}", [i for i, _ in part])
        }
        for state_id, job_id in part:
            data = bytes(rows[state_id]["data"])
            parent = previous[1] if previous is not None and previous[0] == job_id else ""
            payload: str | None = None
            try:
                data = envelope.upgrade_v1(data, job_id, parent)
                payload = envelope.payload_sha256(data)
            except envelope.EnvelopeError:
                pass
            digest = envelope.digest(data)
            previous = (job_id, digest)
            tx.execute(
                "UPDATE states SET data = ?, digest = ?, payload_sha256 = ? WHERE id = ?",
                (data, digest, payload, state_id),
            )


# States bound to their leases and slices paid at the lease's price (issue 17, items 1 and 3): a
# lease keeps the price its job had when it was made; a state keeps its envelope's digest (what a
# child names as parent) and its payload's hash (an unchanged state is a column compare), both
# written when it is stored, so a check-in compares strings without reading the blob; stored
# states are rewritten to envelope format 2.
V5: list[Statement] = [
    "ALTER TABLE leases ADD COLUMN price {bigint} NOT NULL DEFAULT 0",
    "UPDATE leases SET price = COALESCE((SELECT j.price FROM jobs j WHERE j.id = leases.job_id), 0)",
    "ALTER TABLE states ADD COLUMN digest CHAR(64) NULL",
    "ALTER TABLE states ADD COLUMN payload_sha256 CHAR(64) NULL",
    Rewrite(_states_to_v2),
]


# Secret probes: one random secret per database, made once when the schema reaches this version;
# each probe's input is HMAC-SHA256(secret, its job id), so nothing per probe is stored and no
# worker can compute another probe's input. Self-contained (its own table), keyed by
# PROBE_SECRET_VERSION alone.
PROBE_SECRET_VERSION = 6
V6: list[Statement] = [
    """CREATE TABLE secrets (
        name VARCHAR(32) NOT NULL PRIMARY KEY,
        value CHAR(64) NOT NULL
    ) {engine}""",
    # a function of the dialect so that every database (and every upgrade) draws its own
    lambda dialect: f"INSERT INTO secrets (name, value) VALUES ('probe', '{secrets.token_hex(32)}')",
]

# Verification by replay (docs/trust.md): a check per replayed slice or result, the verified flag
# on states and results, the replay lease's check, reversed payments and each client's verified
# slices (a client is under watch until it has ``watch-slices`` of them). Reversals are new
# ledger rows (kind 'reversal'); nothing already written is edited.
V7: list[Statement] = [
    "ALTER TABLE states ADD COLUMN verified INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN result_sha256 CHAR(64) NULL",
    "ALTER TABLE jobs ADD COLUMN verification VARCHAR(16) NULL",
    "ALTER TABLE jobs ADD COLUMN verification_note VARCHAR(255) NULL",
    "ALTER TABLE leases ADD COLUMN check_id {bigint} NULL",
    "ALTER TABLE leases ADD COLUMN reversed INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE clients ADD COLUMN verified_slices INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE checks (
        id {pk},
        job_id {bigint} NOT NULL,
        kind VARCHAR(8) NOT NULL,
        reason VARCHAR(8) NOT NULL,
        lease_id {bigint} NOT NULL,
        worker_id {bigint} NOT NULL,
        parent_state_id {bigint} NOT NULL,
        state_id {bigint} NULL,
        target_sha256 CHAR(64) NOT NULL,
        mark VARCHAR(255) NOT NULL DEFAULT '',
        interpreter VARCHAR(64) NOT NULL,
        steps {bigint} NOT NULL,
        checked_ms {bigint} NOT NULL,
        status VARCHAR(16) NOT NULL,
        created_at {double} NOT NULL,
        replay_lease_id {bigint} NULL,
        first_client_id {bigint} NULL,
        first_sha256 CHAR(64) NULL,
        decided_at {double} NULL,
        note VARCHAR(255) NULL
    ) {engine}""",
    "CREATE INDEX checks_open ON checks (status, created_at)",
    "CREATE INDEX checks_job ON checks (job_id)",
]

# Disputes decided by trusted evidence (docs/trust.md, "How a dispute is decided"): every replay
# of a check, with what it reached, whether it said it hit its cap, whether its verifier was
# trusted (not under watch) and whether it lost; and when a check (last) became disputed (a
# worker under watch may decide it only after verify-wait without a trusted decider).
V8: list[Statement] = [
    "ALTER TABLE checks ADD COLUMN disputed_at {double} NULL",
    """CREATE TABLE check_replays (
        id {pk},
        check_id {bigint} NOT NULL,
        lease_id {bigint} NOT NULL,
        client_id {bigint} NOT NULL,
        reached_sha256 CHAR(64) NOT NULL DEFAULT '',
        capped INTEGER NOT NULL DEFAULT 0,
        trusted INTEGER NOT NULL DEFAULT 0,
        lost INTEGER NOT NULL DEFAULT 0,
        at {double} NOT NULL
    ) {engine}""",
    "CREATE INDEX check_replays_check ON check_replays (check_id)",
]

# issue 19: batches (parameter sweeps): one module and function, many argument sets, one price;
# each argument set is a job of its own (jobs.batch_id, its place in the batch jobs.batch_index)
V9: list[Statement] = [
    """CREATE TABLE batches (
        id {pk},
        account_id {bigint} NOT NULL,
        name VARCHAR(128) NOT NULL,
        source {text} NOT NULL,
        entry VARCHAR(128) NOT NULL,
        source_sha256 CHAR(64) NOT NULL,
        price {bigint} NOT NULL,
        size INTEGER NOT NULL,
        created_at {double} NOT NULL
    ) {engine}""",
    "CREATE INDEX batches_owner ON batches (account_id)",
    "ALTER TABLE jobs ADD COLUMN batch_id {bigint} NULL",
    "ALTER TABLE jobs ADD COLUMN batch_index INTEGER NULL",
    "CREATE INDEX jobs_batch ON jobs (batch_id, batch_index)",
]

# Job logs (issue 19): what each slice printed (stdout and stderr, as the worker's ``info {log}``
# carried it, cut to a per-slice bound), one row per slice; the rows of a job are trimmed to the
# per-job bound (``[dispatch] job-log``), oldest first.
V10: list[Statement] = [
    """CREATE TABLE slice_logs (
        id {pk},
        job_id {bigint} NOT NULL,
        lease_id {bigint} NOT NULL,
        at {double} NOT NULL,
        output {blob} NOT NULL
    ) {engine}""",
    "CREATE INDEX slice_logs_job ON slice_logs (job_id, id)",
]

#: accounts (issue 19): API tokens named and revoked one by one (the CLI's ``market account token``
#: keeps its single ``accounts.api_token_hash``), password-reset links (single use, expiring), an
#: operator's disabling of an account and revoking of a client (a time, NULL while in force)
V11: list[Statement] = [
    """CREATE TABLE api_tokens (
        id {pk},
        account_id {bigint} NOT NULL,
        name VARCHAR(64) NOT NULL,
        token_hash CHAR(64) NOT NULL UNIQUE,
        created_at {double} NOT NULL,
        last_used {double} NULL,
        revoked_at {double} NULL
    ) {engine}""",
    "CREATE INDEX api_tokens_owner ON api_tokens (account_id, id)",
    """CREATE TABLE password_resets (
        token_hash CHAR(64) NOT NULL PRIMARY KEY,
        account_id {bigint} NOT NULL,
        created_at {double} NOT NULL,
        expires_at {double} NOT NULL
    ) {engine}""",
    "CREATE INDEX password_resets_owner ON password_resets (account_id)",
    "ALTER TABLE accounts ADD COLUMN disabled_at {double} NULL",
    "ALTER TABLE clients ADD COLUMN revoked_at {double} NULL",
]

# The jobs list (issue 19): a member's jobs paged, sorted and filtered; each sort key and the
# state filter walk an index that starts with the owner, so a page reads its rows, not the table
V12: list[Statement] = [
    "CREATE INDEX jobs_owner_status ON jobs (account_id, status, id)",
    "CREATE INDEX jobs_owner_name ON jobs (account_id, name, id)",
    "CREATE INDEX jobs_owner_price ON jobs (account_id, price, id)",
    "CREATE INDEX jobs_owner_progress ON jobs (account_id, progress, id)",
    "CREATE INDEX jobs_owner_submitted ON jobs (account_id, submitted_at, id)",
]

# Money you can follow (issue 19): a job's slices pay its exact cost in whole cents by carrying
# what they owe below a cent (thousandths of a cent, 0..999) to the job's next slice
# (``money.carried_payment``), instead of rounding every slice down.
V13: list[Statement] = [
    "ALTER TABLE jobs ADD COLUMN carry INTEGER NOT NULL DEFAULT 0",
]

# Spending caps and e-mail on finish or failure (issue 19, item 6; ``market.core.caps``,
# ``market.core.notices``). Spending caps: the most a job, a batch or an account
# may spend, in cents (NULL: no cap); an account's cap counts from ``cap_since``; a job held by a
# cap keeps the words why in ``hold_reason`` (NULL for a job held for want of money).
V14: list[Statement] = [
    "ALTER TABLE jobs ADD COLUMN cap {bigint} NULL",
    "ALTER TABLE jobs ADD COLUMN hold_reason VARCHAR(255) NULL",
    "ALTER TABLE batches ADD COLUMN cap {bigint} NULL",
    "ALTER TABLE accounts ADD COLUMN cap {bigint} NULL",
    "ALTER TABLE accounts ADD COLUMN cap_since {double} NULL",
    # what the account paid since then (kept with each payment: no sum over the ledger per window)
    "ALTER TABLE accounts ADD COLUMN cap_spent {bigint} NOT NULL DEFAULT 0",
    # e-mail on finish or failure (opt-in, ``accounts.notify``): a job or a batch is looked at
    # once when it ends (``notified``), mailed or not; what ended before this release is not mailed
    "ALTER TABLE accounts ADD COLUMN notify INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN notified INTEGER NOT NULL DEFAULT 0",
    "UPDATE jobs SET notified = 1 WHERE status IN ('finished', 'cancelled')",
    "CREATE INDEX jobs_notice ON jobs (notified, status)",
    "ALTER TABLE batches ADD COLUMN notified INTEGER NOT NULL DEFAULT 0",
    "UPDATE batches SET notified = 1 WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id"
    " AND jobs.status NOT IN ('finished', 'cancelled'))",
]

# issue 20: caches shared by every front end — a generation per cached kind, bumped with each
# change (``store.caches``)
V15: list[Statement] = [
    """CREATE TABLE cache_generation (
        name VARCHAR(32) NOT NULL PRIMARY KEY,
        generation {bigint} NOT NULL DEFAULT 0
    ) {engine}""",
    "INSERT INTO cache_generation (name, generation) VALUES ('clients', 0), ('credentials', 0)",
]

# States of any size (issue 20, item 4; ``market.store.statechunks``): a state over one chunk
# (1 MiB) is stored as rows of ``state_chunks``, keyed by the lease that brought it (a state's
# ``lease_id``), written one chunk per statement so no statement nears MariaDB's
# max_allowed_packet; its ``states`` row then holds no bytes, its count of chunks and its size.
# Existing states stay whole in their row (``chunks`` 0) and are read a chunk at a time with SUBSTR.
V16: list[Statement] = [
    """CREATE TABLE state_chunks (
        lease_id {bigint} NOT NULL,
        idx INTEGER NOT NULL,
        data {blob} NOT NULL,
        PRIMARY KEY (lease_id, idx)
    ) {engine}""",
    "ALTER TABLE states ADD COLUMN chunks INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE states ADD COLUMN size {bigint} NOT NULL DEFAULT 0",
    "UPDATE states SET size = LENGTH(data)",
]

# A worker in an open dispute (its slice or result disputed, or its replay disputing one) is paid
# nothing until the dispute ends: its accepted slices are held (``leases.pay_held``), their money stays
# reserved on the owner's account, and is paid when the dispute is decided for it or given up, or
# returned when it lost (docs/trust.md, "Pay held during a dispute").
V17: list[Statement] = [
    "ALTER TABLE leases ADD COLUMN pay_held INTEGER NOT NULL DEFAULT 0",
]

# Many front ends, one matcher (issue 20, items 1 and 5; ``market.core.frontends``): every
# ``twistd market`` process beats in ``frontends``; one holds the ``matcher_role`` row and runs the
# one pooling window over the ``work_requests`` of every front end; a lease records the front end
# that issued it.
V18: list[Statement] = [
    """CREATE TABLE frontends (
        id VARCHAR(160) NOT NULL PRIMARY KEY,
        host VARCHAR(120) NOT NULL,
        pid INTEGER NOT NULL,
        rpc VARCHAR(255) NOT NULL DEFAULT '',
        started_at {double} NOT NULL,
        heartbeat_at {double} NOT NULL,
        stopped_at {double} NULL
    ) {engine}""",
    """CREATE TABLE matcher_role (
        name VARCHAR(32) NOT NULL PRIMARY KEY,
        holder VARCHAR(160) NULL,
        expires_at {double} NOT NULL,
        since {double} NOT NULL
    ) {engine}""",
    "INSERT INTO matcher_role (name, holder, expires_at, since) VALUES ('matcher', NULL, 0, 0)",
    """CREATE TABLE work_requests (
        id {pk},
        frontend VARCHAR(160) NOT NULL,
        client_id {bigint} NOT NULL,
        speed {double} NOT NULL,
        slice {double} NOT NULL,
        requested_at {double} NOT NULL,
        status VARCHAR(16) NOT NULL,
        lease_id {bigint} NULL
    ) {engine}""",
    "CREATE INDEX work_requests_status ON work_requests (status, id)",
    "CREATE INDEX work_requests_frontend ON work_requests (frontend, status)",
    "ALTER TABLE leases ADD COLUMN frontend VARCHAR(160) NULL",
]

# Held checks (issue 17, ``core.verification.held``): a worker's waiting slice checks wait while
# ``MAX_OPEN_PER_WORKER`` of its checks are in flight and never expire while held; their wait for
# a verifier counts from ``waiting_since`` (set to the time a reap last saw them held), else
# ``created_at``.
V19: list[Statement] = [
    "ALTER TABLE checks ADD COLUMN waiting_since {double} NULL",
]

MIGRATIONS: list[Migration] = [
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (PROBE_SECRET_VERSION, V6),
    (7, V7),
    (8, V8),
    (9, V9),
    (10, V10),
    (11, V11),
    (12, V12),
    (13, V13),
    (14, V14),
    (15, V15),
    (16, V16),
    (17, V17),
    (18, V18),
    (19, V19),
]
LATEST = MIGRATIONS[-1][0]


def _ensure_version_table(tx) -> None:
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        + (" ENGINE=InnoDB" if tx.dialect.name == "mysql" else "")
    )


def current_version(tx) -> int:
    """The schema version stored in the database; 0 for an empty database."""
    _ensure_version_table(tx)
    v = tx.scalar("SELECT MAX(version) FROM schema_version")
    return int(v or 0)


#: how long a process waits for another one's schema creation or upgrade before giving up (seconds)
SCHEMA_LOCK_WAIT = 300.0


@contextmanager
def schema_lock(db, wait: float = SCHEMA_LOCK_WAIT) -> Iterator[None]:
    """Hold the database's schema lock: front ends started together on an empty (or older)
    database create (or upgrade) it one at a time, and the others then find it done.

    MariaDB: ``GET_LOCK('market-schema:DB')`` on a connection of its own (DDL commits at once, so
    the version re-check inside each migration's transaction cannot keep two creators apart), asked
    in steps shorter than the read timeout. SQLite: nothing more is needed — DDL is transactional
    and every transaction starts with ``BEGIN IMMEDIATE``, so the re-check in ``upgrade`` holds."""
    if db.dialect.name != "mysql":
        yield
        return
    name = f"market-schema:{db.url.database}"[:64]
    step = max(1, min(5, int(db.url.read_timeout / 2)))
    deadline = time.monotonic() + wait
    conn = db.dialect.connect()
    try:
        while True:
            with conn.cursor() as c:
                c.execute("SELECT GET_LOCK(%s, %s)", (name, step))
                got = c.fetchone()[0]
            if got == 1:
                break
            if time.monotonic() >= deadline:
                raise MarketError(
                    f"another process has been creating or upgrading the schema of {db.url.redacted()}"
                    f" for over {wait:.0f} s (lock {name!r}) — wait for it to finish, or find it with"
                    " SELECT IS_USED_LOCK(...) and stop it, then start again"
                )
        yield
    finally:
        try:
            with conn.cursor() as c:
                c.execute("SELECT RELEASE_LOCK(%s)", (name,))
        except Exception:
            pass  # closing the connection releases it too
        try:
            conn.close()
        except Exception:
            pass


def upgrade(db, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """Apply every pending migration under the schema lock; returns (version before, version after)."""
    with schema_lock(db):
        return _upgrade(db, migrations)


def _upgrade(db, migrations: Sequence[Migration]) -> tuple[int, int]:
    before = db.transact(current_version)
    latest = migrations[-1][0] if migrations else 0
    if before > latest:
        raise MarketError(
            f"the database is at schema version {before}, newer than this release knows ({latest})"
            " — upgrade the market software"
        )
    for version, statements in migrations:
        if version <= before:
            continue

        def apply(tx, version=version, statements=statements):
            # re-check inside the transaction: two upgraders must not both apply a migration
            if current_version(tx) >= version:
                return
            for statement in statements:
                # a statement is DDL text, a function of the dialect where the two differ, or a rewrite
                if isinstance(statement, Rewrite):
                    statement.run(tx)
                else:
                    tx.execute(statement(tx.dialect) if callable(statement) else tx.dialect.ddl(statement))
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        db.transact(apply)
    return before, db.transact(current_version)


def require_current(db) -> int:
    """Refuse to serve a database whose schema is not the one this release writes."""
    version = db.transact(current_version)
    if version == 0 or 0 < version < LATEST:
        # an empty database is created here; one being created or upgraded by another process
        # (a front end started at the same time, ``market db upgrade``) is waited for
        with schema_lock(db):
            version = db.transact(current_version)
            if version == 0:
                _upgrade(db, MIGRATIONS)
                return LATEST
    if version < LATEST:
        raise MarketError(
            f"the database is at schema version {version}; this release needs {LATEST} — run: market db upgrade"
        )
    if version > LATEST:
        raise MarketError(f"the database schema ({version}) is newer than this release ({LATEST})")
    return version
