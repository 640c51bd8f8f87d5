-- 0001_pgmq: QuantumFlow's own implementation of pgmq's SQL API.
--
-- It is applied only where the real pgmq extension is not available (see
-- pgmq_compat.go). It provides every function of pgmq 1.10 (checked against
-- 1.10.0) with the same names, argument names, defaults,
-- overloads, result types and table layout, and pgmq's results and error
-- classes, so runtime/pgmq and applications written for pgmq work unchanged
-- against either. Written for QuantumFlow from pgmq's documented behaviour;
-- not a copy of pgmq's sources. docs/pgmq.md lists the differences left,
-- each deliberate.
--
-- Layout per queue <name> (table names are lower-cased, as in pgmq):
--   pgmq.q_<name>  live messages, index on vt
--   pgmq.a_<name>  archived messages (same columns plus archived_at)
--   pgmq.meta      one row per queue
--
-- Queue names follow pgmq's rules: any text except NULL and names containing
-- $, ;, -- or ' (rejected with SQLSTATE P0001, as pgmq does), at most 47
-- characters for create*. Identifiers are always quoted (format('%I')), so
-- names with hyphens, spaces, dots or upper case work. Unknown queues raise
-- SQLSTATE 42P01 (undefined_table), the code pgmq's "relation does not
-- exist" carries.
--
-- Every statement is idempotent (CREATE OR REPLACE, IF NOT EXISTS), so a
-- database that an earlier revision of this file installed is upgraded by
-- running it again (migrations.Migrate does, see pgmq_compat.go);
-- pgmq._qflow_revision() tells which revision is installed.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE IF NOT EXISTS pgmq.meta (
    queue_name     varchar UNIQUE NOT NULL,
    is_partitioned boolean NOT NULL,
    is_unlogged    boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Throttle state for enable_notify_insert. Unlogged, as in pgmq: losing it
-- in a crash only means the next insert notifies unthrottled.
CREATE UNLOGGED TABLE IF NOT EXISTS pgmq.notify_insert_throttle (
    queue_name           varchar UNIQUE NOT NULL
                         REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    throttle_interval_ms integer NOT NULL DEFAULT 0,
    last_notified_at     timestamptz NOT NULL DEFAULT to_timestamp(0)
);

-- As pgmq: monitoring roles may read every queue.
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

DO $types$
BEGIN
    IF to_regtype('pgmq.message_record') IS NULL THEN
        CREATE TYPE pgmq.message_record AS (
            msg_id       bigint,
            read_ct      integer,
            enqueued_at  timestamptz,
            last_read_at timestamptz,
            vt           timestamptz,
            message      jsonb,
            headers      jsonb
        );
    END IF;
    IF to_regtype('pgmq.queue_record') IS NULL THEN
        CREATE TYPE pgmq.queue_record AS (
            queue_name     varchar,
            is_partitioned boolean,
            is_unlogged    boolean,
            created_at     timestamptz
        );
    END IF;
    IF to_regtype('pgmq.metrics_result') IS NULL THEN
        CREATE TYPE pgmq.metrics_result AS (
            queue_name           text,
            queue_length         bigint,
            newest_msg_age_sec   integer,
            oldest_msg_age_sec   integer,
            total_messages       bigint,
            scrape_time          timestamptz,
            queue_visible_length bigint
        );
    END IF;
END
$types$;

-- The first revision's helper, replaced by acquire_queue_lock.
DROP FUNCTION IF EXISTS pgmq._lock_queue(text);

-- _qflow_revision identifies this file: QuantumFlow's SQL, not pgmq's, and
-- which revision of it (1 had no such function). Bump it whenever a change
-- must reach databases that an earlier revision installed.
CREATE OR REPLACE FUNCTION pgmq._qflow_revision()
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $fn$ SELECT 2 $fn$;

------------------------------------------------------------------------------
-- Names
------------------------------------------------------------------------------

-- validate_queue_name raises P0001 when queue_name is longer than 47
-- characters, as pgmq does: every identifier derived from it, up to pg_partman's
-- template_pgmq_q_<name>, must fit PostgreSQL's 63 bytes. Other rules are
-- format_table_name's.
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
    END IF;
END;
$fn$;

-- format_table_name returns lower(prefix || '_' || queue_name), the table
-- name (without schema) of a queue's live ('q') or archive ('a') table. Like
-- pgmq it raises P0001 for a name containing $, ;, -- or ' and returns NULL
-- for NULL; unlike pgmq it also rejects the empty name (P0001).
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF queue_name ~ '\$|;|--|''' THEN
        RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \''';
    END IF;
    IF queue_name = '' THEN
        RAISE EXCEPTION 'queue name must not be empty';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- _queue_table is format_table_name for a queue that must exist. A NULL
-- name raises 22004 (pgmq fails the same way, formatting a NULL identifier);
-- an unknown queue raises 'queue "<name>" does not exist' (42P01).
CREATE OR REPLACE FUNCTION pgmq._queue_table(queue_name text, prefix text DEFAULT 'q')
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    tbl text := pgmq.format_table_name(queue_name, prefix);
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF to_regclass(format('pgmq.%I', tbl)) IS NULL THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Create it with pgmq.create().';
    END IF;
    RETURN tbl;
END;
$fn$;

-- acquire_queue_lock serialises create/drop of one queue until the end of
-- the transaction. Unlike pgmq's it locks case-insensitively, like the table
-- names, so that names differing only in case are serialised too.
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pg_advisory_xact_lock(hashtext('pgmq.queue_' || lower(queue_name)));
$fn$;

------------------------------------------------------------------------------
-- Extensions (pg_partman) and pgmq's internal helpers
------------------------------------------------------------------------------

-- _extension_exists reports whether extension_name is installed in this
-- database.
CREATE OR REPLACE FUNCTION pgmq._extension_exists(extension_name text)
RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = extension_name);
$fn$;

-- _belongs_to_pgmq reports whether table_name is a member of the pgmq
-- extension (always false here: this SQL is not the extension).
CREATE OR REPLACE FUNCTION pgmq._belongs_to_pgmq(table_name text)
RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmq'
        JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relname = table_name
    );
$fn$;

-- _get_pg_partman_schema returns the schema pg_partman is installed in
-- (NULL when it is not installed), unquoted.
CREATE OR REPLACE FUNCTION pgmq._get_pg_partman_schema()
RETURNS text
LANGUAGE sql STABLE
AS $fn$
    SELECT n.nspname::text
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';
$fn$;

-- _get_pg_partman_major_version returns pg_partman's major version (4 or
-- 5; NULL when it is not installed).
CREATE OR REPLACE FUNCTION pgmq._get_pg_partman_major_version()
RETURNS integer
LANGUAGE sql STABLE
AS $fn$
    SELECT split_part(e.extversion, '.', 1)::integer
    FROM pg_catalog.pg_extension e
    WHERE e.extname = 'pg_partman';
$fn$;

-- _ensure_pg_partman_installed raises pgmq's error (P0001) when pg_partman
-- is not installed in this database, with a hint saying how to get it.
CREATE OR REPLACE FUNCTION pgmq._ensure_pg_partman_installed()
RETURNS void
LANGUAGE plpgsql STABLE
AS $fn$
BEGIN
    IF NOT pgmq._extension_exists('pg_partman') THEN
        RAISE EXCEPTION 'pg_partman is required for partitioned queues'
            USING HINT = 'Install the pg_partman extension in this database (CREATE EXTENSION pg_partman; '
                      || 'on Debian the package is postgresql-<version>-partman), or use pgmq.create().';
    END IF;
END;
$fn$;

-- _partman_name_ok raises P0001 for a queue name containing a dot:
-- pg_partman takes tables as "schema.table" strings split at dots, so it
-- cannot partition such a queue (pgmq fails there too, inside pg_partman).
CREATE OR REPLACE FUNCTION pgmq._partman_name_ok(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF strpos(queue_name, '.') > 0 THEN
        RAISE EXCEPTION 'partitioned queue name "%" must not contain "."', queue_name
            USING HINT = 'pg_partman splits table names at dots; use pgmq.create() for this name or choose another.';
    END IF;
END;
$fn$;

-- _get_partition_col returns the column a partitioned queue is partitioned
-- by: msg_id when partition_interval is an integer (a number of messages),
-- enqueued_at otherwise (a time interval).
CREATE OR REPLACE FUNCTION pgmq._get_partition_col(partition_interval text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    n integer;
BEGIN
    n := partition_interval::integer;
    RETURN 'msg_id';
EXCEPTION WHEN OTHERS THEN
    RETURN 'enqueued_at';
END;
$fn$;

-- _partman_create_parent hands a partitioned table, named "pgmq.<table>"
-- unquoted as pg_partman wants it, to pg_partman (4.x calls
-- the strategy 'native', 5.x 'range') and sets its retention: partitions
-- entirely older than retention are dropped by pg_partman's maintenance
-- (run_maintenance, or its background worker).
CREATE OR REPLACE FUNCTION pgmq._partman_create_parent(
    fq_table text, control text, partition_interval text, retention_interval text,
    keep_index boolean, infinite_time boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    partman text := pgmq._get_pg_partman_schema();
BEGIN
    EXECUTE format(
        'SELECT %I.create_parent(p_parent_table := $1, p_control := $2, p_interval := $3, p_type := $4)',
        partman)
    USING fq_table, control, partition_interval,
          CASE WHEN pgmq._get_pg_partman_major_version() >= 5 THEN 'range' ELSE 'native' END;
    EXECUTE format(
        $q$
        UPDATE %I.part_config
        SET retention = $1,
            retention_keep_table = false,
            retention_keep_index = $2,
            automatic_maintenance = 'on',
            infinite_time_partitions = infinite_time_partitions OR $3
        WHERE parent_table = $4
        $q$,
        partman)
    USING retention_interval, keep_index, infinite_time, fq_table;
END;
$fn$;

-- _partman_forget removes the pg_partman configuration and template table
-- (pg_partman 4.x keeps one per parent) of fq_table ("pgmq.<table>",
-- unquoted) when pg_partman is installed.
CREATE OR REPLACE FUNCTION pgmq._partman_forget(fq_table text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    partman  text := pgmq._get_pg_partman_schema();
    template text;
BEGIN
    IF partman IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('DELETE FROM %I.part_config WHERE parent_table = $1 RETURNING template_table', partman)
    INTO template
    USING fq_table;
    -- template_table is "schema.table", unquoted.
    SELECT format('%I.%I', n.nspname, c.relname) INTO template
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname || '.' || c.relname = template;
    IF FOUND THEN
        EXECUTE format('DROP TABLE %s', template);
    END IF;
END;
$fn$;

------------------------------------------------------------------------------
-- Queue management
------------------------------------------------------------------------------

-- _create_checks validates a new queue's name (P0001 for names pgmq
-- rejects, 22004 for NULL), takes the queue's lock, and refuses a name that
-- differs only in case from an existing queue's (42P07): both would share
-- the same tables. It returns the live table's name.
CREATE OR REPLACE FUNCTION pgmq._create_checks(queue_name text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    other  text;
BEGIN
    IF qtable IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq.validate_queue_name(queue_name);
    PERFORM pgmq.acquire_queue_lock(queue_name);
    SELECT m.queue_name INTO other
    FROM pgmq.meta m
    WHERE lower(m.queue_name) = lower(_create_checks.queue_name)
      AND m.queue_name <> _create_checks.queue_name;
    IF FOUND THEN
        RAISE EXCEPTION 'queue "%" conflicts with existing queue "%": names that differ only in case share tables',
            queue_name, other
            USING ERRCODE = 'duplicate_table';
    END IF;
    RETURN qtable;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq._create(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._create_checks(queue_name);
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    EXECUTE format(
        $q$
        CREATE %s TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            last_read_at timestamptz,
            vt           timestamptz NOT NULL,
            message      jsonb,
            headers      jsonb
        )
        $q$,
        CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, qtable);

    EXECUTE format(
        $q$
        CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            last_read_at timestamptz,
            archived_at  timestamptz NOT NULL DEFAULT now(),
            vt           timestamptz NOT NULL,
            message      jsonb,
            headers      jsonb
        )
        $q$,
        atable);

    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable || '_vt_idx', qtable);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                   'archived_at_idx_' || lower(queue_name), atable);

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (_create.queue_name, false, unlogged)
    ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
END;
$fn$;

-- create_non_partitioned creates a queue (idempotent).
CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, false);
$fn$;

-- create creates a queue (idempotent); the same as create_non_partitioned.
CREATE OR REPLACE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, false);
$fn$;

-- create_unlogged creates a queue whose live table is UNLOGGED: faster, but
-- emptied by crash recovery. The archive table is logged.
CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, true);
$fn$;

-- create_partitioned creates a queue whose live and archive tables are
-- partitioned by pg_partman (P0001 naming pg_partman when it is not
-- installed). An integer partition_interval partitions by msg_id (that
-- many messages per partition), anything else is a time interval that
-- partitions the live table by enqueued_at and the archive by archived_at.
-- retention_interval, in the same unit, is how much pg_partman's maintenance
-- keeps. Idempotent.
CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
    queue_name         text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000'
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable   text := pgmq._create_checks(queue_name);
    atable   text := pgmq.format_table_name(queue_name, 'a');
    col      text;
    acol     text;
BEGIN
    PERFORM pgmq._ensure_pg_partman_installed();
    PERFORM pgmq._partman_name_ok(queue_name);
    col  := pgmq._get_partition_col(partition_interval);
    acol := CASE WHEN col = 'enqueued_at' THEN 'archived_at' ELSE col END;

    IF to_regclass(format('pgmq.%I', qtable)) IS NULL THEN
        EXECUTE format(
            $q$
            CREATE TABLE pgmq.%I (
                msg_id       bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
                read_ct      integer NOT NULL DEFAULT 0,
                enqueued_at  timestamptz NOT NULL DEFAULT now(),
                last_read_at timestamptz,
                vt           timestamptz NOT NULL,
                message      jsonb,
                headers      jsonb
            ) PARTITION BY RANGE (%I)
            $q$,
            qtable, col);
        PERFORM pgmq._partman_create_parent('pgmq.' || qtable, col, partition_interval,
                                            retention_interval, true, false);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (%I)', qtable || '_part_idx', qtable, col);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable || '_vt_idx', qtable);
    END IF;

    IF to_regclass(format('pgmq.%I', atable)) IS NULL THEN
        EXECUTE format(
            $q$
            CREATE TABLE pgmq.%I (
                msg_id       bigint NOT NULL,
                read_ct      integer NOT NULL DEFAULT 0,
                enqueued_at  timestamptz NOT NULL DEFAULT now(),
                last_read_at timestamptz,
                archived_at  timestamptz NOT NULL DEFAULT now(),
                vt           timestamptz NOT NULL,
                message      jsonb,
                headers      jsonb
            ) PARTITION BY RANGE (%I)
            $q$,
            atable, acol);
        PERFORM pgmq._partman_create_parent('pgmq.' || atable, acol, partition_interval,
                                            retention_interval, true, false);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                       'archived_at_idx_' || lower(queue_name), atable);
    END IF;

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (create_partitioned.queue_name, true, false)
    ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
END;
$fn$;

-- convert_archive_partitioned turns an existing queue's archive into a
-- pg_partman-partitioned table (by msg_id for an integer partition_interval,
-- by archived_at otherwise), as pgmq does: the old archive is kept, renamed
-- a_<name>_old, and the new one starts empty. It does nothing (NOTICE) when
-- the archive is already partitioned or does not exist, and raises P0001
-- naming pg_partman when that is not installed. leading_partition is
-- accepted for pgmq's signature and, as in pgmq, not used.
CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
    table_name         text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    leading_partition  integer DEFAULT 10
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    atable  text := pgmq.format_table_name(table_name, 'a');
    old     text := atable || '_old';
    kind    "char";
    acol    text;
    idx     text := 'archived_at_idx_' || lower(table_name);
BEGIN
    IF atable IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind INTO kind
    FROM pg_catalog.pg_class c
    WHERE c.oid = to_regclass(format('pgmq.%I', atable));
    IF kind = 'p' THEN
        RAISE NOTICE 'Table %s is already partitioned', atable;
        RETURN;
    END IF;
    IF kind IS DISTINCT FROM 'r' THEN
        RAISE NOTICE 'Table %s does not exists', atable;
        RETURN;
    END IF;
    PERFORM pgmq._ensure_pg_partman_installed();
    PERFORM pgmq._partman_name_ok(table_name);
    acol := CASE WHEN pgmq._get_partition_col(partition_interval) = 'enqueued_at' THEN 'archived_at' ELSE 'msg_id' END;

    EXECUTE format('ALTER TABLE pgmq.%I RENAME TO %I', atable, old);
    -- The old index keeps a name of its own that always fits (pgmq appends
    -- _old, which PostgreSQL truncates back to the original name for the
    -- longest queue names, so that pgmq fails there).
    IF to_regclass(format('pgmq.%I', idx)) IS NOT NULL THEN
        EXECUTE format('ALTER INDEX pgmq.%I RENAME TO %I', idx,
                       'archived_at_idx_old_' || to_regclass(format('pgmq.%I', old))::oid);
    END IF;
    IF acol = 'archived_at' THEN
        -- msg_id's primary key cannot be kept: a partitioned table's unique
        -- constraints must include the partition key.
        EXECUTE format('CREATE TABLE pgmq.%I (LIKE pgmq.%I INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
                       atable, old, acol);
    ELSE
        EXECUTE format('CREATE TABLE pgmq.%I (LIKE pgmq.%I INCLUDING ALL) PARTITION BY RANGE (%I)',
                       atable, old, acol);
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', idx, atable);
    PERFORM pgmq._partman_create_parent('pgmq.' || atable, acol, partition_interval,
                                        retention_interval, false, true);
END;
$fn$;

-- detach_archive is a no-op with pgmq 1.10's deprecation WARNING: archive
-- tables are not extension members, so DROP EXTENSION never drops them.
CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.format_table_name(queue_name, 'a');
    RAISE WARNING 'detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.';
END;
$fn$;

-- drop_queue drops a queue, its archive, its notify settings and, for a
-- partitioned queue, its pg_partman configuration. It returns false (with
-- a NOTICE) when the queue does not exist.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    IF qtable IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq.acquire_queue_lock(queue_name);
    IF to_regclass(format('pgmq.%I', qtable)) IS NULL
       AND NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name) THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN false;
    END IF;
    PERFORM pgmq._partman_forget('pgmq.' || qtable);
    PERFORM pgmq._partman_forget('pgmq.' || atable);
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
    DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
    RETURN true;
END;
$fn$;

-- drop_queue(queue_name, partitioned) is pgmq's deprecated form: it warns,
-- ignores partitioned, drops the queue if it exists and, as pgmq 1.10 does,
-- returns true either way.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
    PERFORM pgmq.drop_queue(queue_name);
    RETURN true;
END;
$fn$;

-- purge_queue deletes every live message (not the archive) and returns how
-- many it deleted.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
    n      bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I', qtable);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;

-- list_queues returns every queue, in pgmq.meta's order as pgmq does (no
-- ORDER BY; in practice the order of creation).
CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $fn$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
    FROM pgmq.meta m;
$fn$;

-- metrics reports one queue as of the start of the transaction (now()), as
-- pgmq does. Ages are whole seconds (NULL when the queue is empty);
-- total_messages counts every message ever sent (the identity sequence);
-- queue_visible_length counts messages whose vt has passed.
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
    seq    text := pg_get_serial_sequence(format('pgmq.%I', qtable), 'msg_id');
    result pgmq.metrics_result;
BEGIN
    EXECUTE format(
        $q$
        SELECT $1::text,
               count(*),
               extract(epoch FROM now() - max(q.enqueued_at))::integer,
               extract(epoch FROM now() - min(q.enqueued_at))::integer,
               (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM %s s),
               now(),
               count(*) FILTER (WHERE q.vt <= now())
        FROM pgmq.%I q
        $q$,
        seq, qtable)
    INTO result
    USING queue_name;
    RETURN result;
END;
$fn$;

-- metrics_all reports every queue, in list_queues' order.
CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT m.queue_name FROM pgmq.meta m LOOP
        RETURN NEXT pgmq.metrics(name);
    END LOOP;
END;
$fn$;

------------------------------------------------------------------------------
-- Sending
------------------------------------------------------------------------------

-- send (queue_name, msg, headers, delay timestamptz) is the implementation
-- behind every send overload: the message becomes visible at delay. A NULL
-- delay violates vt's NOT NULL (SQLSTATE 23502), as in pgmq.
CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
        qtable)
    USING delay, msg, headers;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, delay);
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

-- send_batch (queue_name, msgs, headers, delay timestamptz) is the
-- implementation behind every send_batch overload. Ids are returned in the
-- order of msgs; headers, when not NULL, must have one entry per message
-- (P0001 otherwise, with pgmq 1.11's message; pgmq 1.10 padded with NULLs).
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    IF headers IS NOT NULL AND cardinality(headers) <> coalesce(cardinality(msgs), 0) THEN
        RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)',
            cardinality(headers), coalesce(cardinality(msgs), 0);
    END IF;
    RETURN QUERY EXECUTE format(
        $q$
        INSERT INTO pgmq.%I (vt, message, headers)
        SELECT $1, u.msg, u.hdr
        FROM unnest($2, $3) WITH ORDINALITY AS u(msg, hdr, ord)
        ORDER BY u.ord
        RETURNING msg_id
        $q$,
        qtable)
    USING delay, msgs, headers;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay);
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------

-- read claims up to qty visible messages (oldest id first; rows locked by
-- other readers are skipped), hides them for vt seconds, counts the read,
-- sets last_read_at and returns them. conditional, when not '{}', keeps only
-- messages containing it (jsonb @>).
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.vt <= clock_timestamp()
              AND ($3 = '{}'::jsonb OR q.message @> $3)
            ORDER BY q.msg_id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE pgmq.%1$I m
            SET vt           = clock_timestamp() + make_interval(secs => $2),
                read_ct      = m.read_ct + 1,
                last_read_at = clock_timestamp()
            FROM picked
            WHERE m.msg_id = picked.msg_id
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        )
        SELECT c.msg_id, c.read_ct, c.enqueued_at, c.last_read_at, c.vt, c.message, c.headers
        FROM claimed c
        ORDER BY c.msg_id
        $q$,
        qtable)
    USING qty, vt, coalesce(conditional, '{}'::jsonb);
END;
$fn$;

-- read_with_poll is read that, while nothing is visible, retries every
-- poll_interval_ms for up to max_poll_seconds. It returns as soon as a read
-- finds messages. Each retry sees rows committed since the previous one.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
    queue_name       text,
    vt               integer,
    qty              integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional      jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._poll('read', queue_name, vt, qty, max_poll_seconds, poll_interval_ms, conditional);
END;
$fn$;

-- _poll runs read ('read'), read_grouped ('grouped') or read_grouped_rr
-- ('rr') until it returns messages or max_poll_seconds have passed,
-- sleeping poll_interval_ms between tries.
CREATE OR REPLACE FUNCTION pgmq._poll(
    how text, queue_name text, vt integer, qty integer,
    max_poll_seconds integer, poll_interval_ms integer, conditional jsonb)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    stop_at timestamptz;
    rest    interval;
BEGIN
    PERFORM pgmq._queue_table(queue_name, 'q');
    IF poll_interval_ms IS NULL OR poll_interval_ms < 1 THEN
        RAISE EXCEPTION 'poll_interval_ms must be at least 1, got %', poll_interval_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    stop_at := clock_timestamp() + make_interval(secs => coalesce(max_poll_seconds, 0));
    LOOP
        IF how = 'read' THEN
            RETURN QUERY SELECT * FROM pgmq.read(queue_name, vt, qty, conditional);
        ELSIF how = 'grouped' THEN
            RETURN QUERY SELECT * FROM pgmq.read_grouped(queue_name, vt, qty);
        ELSE
            RETURN QUERY SELECT * FROM pgmq.read_grouped_rr(queue_name, vt, qty);
        END IF;
        IF FOUND THEN
            RETURN;
        END IF;
        rest := stop_at - clock_timestamp();
        IF rest <= interval '0' THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0, extract(epoch FROM rest)));
    END LOOP;
END;
$fn$;

-- read_grouped reads FIFO groups the way SQS FIFO queues batch them. A
-- message's group is its headers' "x-pgmq-group" (messages without one
-- form a default group). Within a group messages are delivered in id order
-- and only while no earlier message of the group is invisible (being
-- processed); the batch is filled from the group with the oldest visible
-- message first, then the next. A group whose first visible message another
-- reader has locked is skipped.
CREATE OR REPLACE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH msgs AS (
            SELECT q.msg_id,
                   coalesce(q.headers->>'x-pgmq-group', '_default_fifo_group') AS grp,
                   q.vt <= clock_timestamp() AS visible
            FROM pgmq.%1$I q
        ), groups AS (
            SELECT m.grp,
                   min(m.msg_id) FILTER (WHERE m.visible)     AS head,
                   min(m.msg_id) FILTER (WHERE NOT m.visible) AS busy_from
            FROM msgs m
            GROUP BY m.grp
        ), ready AS (
            SELECT m.msg_id, g.head,
                   row_number() OVER (PARTITION BY m.grp ORDER BY m.msg_id) AS rnk
            FROM msgs m JOIN groups g ON g.grp = m.grp
            WHERE m.visible AND (g.busy_from IS NULL OR m.msg_id < g.busy_from)
        ), heads AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.msg_id IN (SELECT r.head FROM ready r)
            FOR UPDATE SKIP LOCKED
        ), picked AS (
            SELECT r.msg_id
            FROM ready r
            WHERE r.head IN (SELECT h.msg_id FROM heads h)
            ORDER BY r.head, r.rnk
            LIMIT $1
        ), locked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.msg_id IN (SELECT p.msg_id FROM picked p)
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE pgmq.%1$I m
            SET vt           = clock_timestamp() + make_interval(secs => $2),
                read_ct      = m.read_ct + 1,
                last_read_at = clock_timestamp()
            FROM locked l
            WHERE m.msg_id = l.msg_id
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        )
        SELECT c.msg_id, c.read_ct, c.enqueued_at, c.last_read_at, c.vt, c.message, c.headers
        FROM claimed c
        ORDER BY c.msg_id
        $q$,
        qtable)
    USING qty, vt;
END;
$fn$;

-- read_grouped_with_poll is read_grouped with read_with_poll's waiting.
CREATE OR REPLACE FUNCTION pgmq.read_grouped_with_poll(
    queue_name       text,
    vt               integer,
    qty              integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._poll('grouped', queue_name, vt, qty, max_poll_seconds, poll_interval_ms, NULL);
END;
$fn$;

-- read_grouped_rr reads FIFO groups round-robin: only groups whose oldest
-- message is visible take part; the batch takes the first message of each
-- such group (oldest group first), then the second of each, and so on, and
-- is returned in that order. A group another read_grouped_rr holds in an
-- open transaction is skipped (a transaction-scoped advisory lock per queue
-- and group).
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH msgs AS (
            SELECT q.msg_id,
                   coalesce(q.headers->>'x-pgmq-group', '_default_fifo_group') AS grp,
                   q.vt <= clock_timestamp() AS visible
            FROM pgmq.%1$I q
        ), heads AS (
            SELECT m.grp, min(m.msg_id) AS head
            FROM msgs m
            GROUP BY m.grp
        ), eligible AS (
            SELECT h.grp, h.head
            FROM heads h JOIN msgs m ON m.msg_id = h.head
            WHERE CASE WHEN m.visible
                       THEN pg_try_advisory_xact_lock(hashtextextended($3 || '/' || h.grp, 0))
                       ELSE false END
        ), ranked AS (
            SELECT m.msg_id,
                   row_number() OVER (ORDER BY row_number_in_group, e.head) AS ord
            FROM (SELECT m.*, row_number() OVER (PARTITION BY m.grp ORDER BY m.msg_id) AS row_number_in_group
                  FROM msgs m WHERE m.visible) m
            JOIN eligible e ON e.grp = m.grp
        ), picked AS (
            SELECT r.msg_id, r.ord FROM ranked r ORDER BY r.ord LIMIT $1
        ), locked AS (
            SELECT q.msg_id, p.ord
            FROM pgmq.%1$I q JOIN picked p ON p.msg_id = q.msg_id
            FOR UPDATE OF q SKIP LOCKED
        ), claimed AS (
            UPDATE pgmq.%1$I m
            SET vt           = clock_timestamp() + make_interval(secs => $2),
                read_ct      = m.read_ct + 1,
                last_read_at = clock_timestamp()
            FROM locked l
            WHERE m.msg_id = l.msg_id
              AND m.vt <= clock_timestamp()
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers, l.ord
        )
        SELECT c.msg_id, c.read_ct, c.enqueued_at, c.last_read_at, c.vt, c.message, c.headers
        FROM claimed c
        ORDER BY c.ord
        $q$,
        qtable)
    USING qty, vt, qtable;
END;
$fn$;

-- read_grouped_rr_with_poll is read_grouped_rr with read_with_poll's
-- waiting.
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr_with_poll(
    queue_name       text,
    vt               integer,
    qty              integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq._poll('rr', queue_name, vt, qty, max_poll_seconds, poll_interval_ms, NULL);
END;
$fn$;

-- _create_fifo_index_if_not_exists creates a GIN index on the queue's
-- headers (q_<name>_fifo_idx), which speeds up the grouped reads.
CREATE OR REPLACE FUNCTION pgmq._create_fifo_index_if_not_exists(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I USING gin (headers)', qtable || '_fifo_idx', qtable);
END;
$fn$;

-- create_fifo_index creates the grouped reads' index on one queue
-- (idempotent).
CREATE OR REPLACE FUNCTION pgmq.create_fifo_index(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create_fifo_index_if_not_exists(queue_name);
$fn$;

-- create_fifo_indexes_all creates the grouped reads' index on every queue.
CREATE OR REPLACE FUNCTION pgmq.create_fifo_indexes_all()
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT m.queue_name FROM pgmq.meta m LOOP
        PERFORM pgmq.create_fifo_index(name);
    END LOOP;
END;
$fn$;

-- pop claims and deletes up to qty visible messages in one step (at-most-once
-- delivery), oldest first. read_ct and last_read_at are returned as they
-- were (a pop is not a read).
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.vt <= clock_timestamp()
            ORDER BY q.msg_id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM pgmq.%1$I m
            USING picked
            WHERE m.msg_id = picked.msg_id
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        )
        SELECT g.msg_id, g.read_ct, g.enqueued_at, g.last_read_at, g.vt, g.message, g.headers
        FROM gone g
        ORDER BY g.msg_id
        $q$,
        qtable)
    USING qty;
END;
$fn$;

------------------------------------------------------------------------------
-- Deleting, archiving, visibility
------------------------------------------------------------------------------

-- archive (batch) moves messages to the archive table and returns the ids it
-- moved; ids that are not in the queue are ignored.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH gone AS (
            DELETE FROM pgmq.%I q
            WHERE q.msg_id = ANY ($1)
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers
        ), moved AS (
            INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
            SELECT g.msg_id, g.read_ct, g.enqueued_at, g.last_read_at, g.vt, g.message, g.headers
            FROM gone g
            RETURNING msg_id
        )
        SELECT mv.msg_id FROM moved mv ORDER BY mv.msg_id
        $q$,
        qtable, atable)
    USING msg_ids;
END;
$fn$;

-- archive (single) moves one message to the archive table; false when it is
-- not in the queue.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE sql
AS $fn$
    SELECT EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id]));
$fn$;

-- delete (batch) deletes messages and returns the ids it deleted; ids that
-- are not in the queue are ignored.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH gone AS (
            DELETE FROM pgmq.%I q WHERE q.msg_id = ANY ($1) RETURNING q.msg_id
        )
        SELECT g.msg_id FROM gone g ORDER BY g.msg_id
        $q$,
        qtable)
    USING msg_ids;
END;
$fn$;

-- delete (single) deletes one message; false when it is not in the queue.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
    n      bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I q WHERE q.msg_id = $1', qtable) USING msg_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END;
$fn$;

-- set_vt (batch, timestamp) makes messages visible at vt and returns them,
-- by ascending id; ids not in the queue are ignored. A NULL vt violates vt's
-- NOT NULL (SQLSTATE 23502), as in pgmq.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $q$
        WITH changed AS (
            UPDATE pgmq.%I q
            SET vt = $1
            WHERE q.msg_id = ANY ($2)
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers
        )
        SELECT c.msg_id, c.read_ct, c.enqueued_at, c.last_read_at, c.vt, c.message, c.headers
        FROM changed c
        ORDER BY c.msg_id
        $q$,
        qtable)
    USING vt, msg_ids;
END;
$fn$;

-- set_vt (batch, seconds) makes messages visible vt seconds from now.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.set_vt(queue_name, msg_ids, clock_timestamp() + make_interval(secs => vt));
$fn$;

-- set_vt (single, timestamp) makes one message visible at vt and returns it
-- (no row when it is not in the queue).
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.set_vt(queue_name, ARRAY[msg_id], vt);
$fn$;

-- set_vt (single, seconds) makes one message visible vt seconds from now.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.set_vt(queue_name, ARRAY[msg_id], clock_timestamp() + make_interval(secs => vt));
$fn$;

------------------------------------------------------------------------------
-- Insert notifications
------------------------------------------------------------------------------

-- notify_queue_listeners is the trigger behind enable_notify_insert. It
-- sends NOTIFY "pgmq.q_<name>.INSERT" (no payload) unless a notification
-- was sent less than throttle_interval_ms ago. TG_ARGV[0] is the queue name.
CREATE OR REPLACE FUNCTION pgmq.notify_queue_listeners()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    UPDATE pgmq.notify_insert_throttle t
    SET last_notified_at = clock_timestamp()
    WHERE t.queue_name = TG_ARGV[0]
      AND (t.throttle_interval_ms = 0
           OR clock_timestamp() - t.last_notified_at >= t.throttle_interval_ms * interval '1 millisecond');
    IF FOUND
       OR NOT EXISTS (SELECT 1 FROM pgmq.notify_insert_throttle t WHERE t.queue_name = TG_ARGV[0]) THEN
        PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
    END IF;
    RETURN NULL;
END;
$fn$;

-- enable_notify_insert makes inserts into the queue send
-- NOTIFY "pgmq.q_<name>.INSERT", at most once per throttle_interval_ms
-- (0: every inserting statement). Calling it again replaces the setting.
-- Like pgmq it raises P0001 for a negative interval or an unknown queue;
-- it also refuses (P0001) a queue whose channel name would exceed
-- PostgreSQL's 63 bytes, where every NOTIFY would fail.
CREATE OR REPLACE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    rel    regclass;
BEGIN
    IF throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative';
    END IF;
    IF qtable IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    rel := to_regclass(format('pgmq.%I', qtable));
    IF rel IS NULL OR NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = enable_notify_insert.queue_name) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create it first using pgmq.create()', queue_name;
    END IF;
    IF octet_length('pgmq.' || (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = rel) || '.INSERT') > 63 THEN
        RAISE EXCEPTION 'queue "%": its notification channel would be longer than 63 bytes', queue_name
            USING HINT = 'Use a shorter queue name for insert notifications.';
    END IF;
    INSERT INTO pgmq.notify_insert_throttle AS t (queue_name, throttle_interval_ms)
    VALUES (enable_notify_insert.queue_name, coalesce(enable_notify_insert.throttle_interval_ms, 0))
    ON CONFLICT ON CONSTRAINT notify_insert_throttle_queue_name_key DO UPDATE
        SET throttle_interval_ms = EXCLUDED.throttle_interval_ms,
            last_notified_at     = to_timestamp(0);
    EXECUTE format(
        $q$
        CREATE OR REPLACE TRIGGER trigger_notify_queue_insert_listeners
        AFTER INSERT ON pgmq.%I
        FOR EACH STATEMENT
        EXECUTE FUNCTION pgmq.notify_queue_listeners(%L)
        $q$,
        qtable, queue_name);
END;
$fn$;

-- disable_notify_insert stops insert notifications for the queue (a no-op
-- when they are off).
CREATE OR REPLACE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS trigger_notify_queue_insert_listeners ON pgmq.%I', qtable);
    DELETE FROM pgmq.notify_insert_throttle t WHERE t.queue_name = disable_notify_insert.queue_name;
END;
$fn$;
