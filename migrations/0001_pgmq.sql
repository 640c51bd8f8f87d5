-- 0001_pgmq: QuantumFlow's own implementation of pgmq's SQL API.
--
-- It is applied only where the real pgmq extension is not available (see
-- migrate.go). Function names, argument names, defaults, overloads, result
-- types and the table layout follow pgmq 1.10+, so runtime/pgmq and the
-- engine work unchanged against either. Written for QuantumFlow; not a copy
-- of pgmq's sources.
--
-- Layout per queue <name> (table names are lower-cased, as in pgmq):
--   pgmq.q_<name>  live messages, index on vt
--   pgmq.a_<name>  archived messages (same columns plus archived_at)
--   pgmq.meta      one row per queue
--
-- Every function that takes a queue name validates it (ASCII letters, digits
-- and underscores, 1..47 characters) before any dynamic SQL is built, and
-- identifiers are still quoted with format('%I'). Unknown queues raise
-- SQLSTATE 42P01 (undefined_table), the code the real extension's "relation
-- does not exist" carries, so clients can handle both the same way.
--
-- Differences from the real extension, all deliberate:
--   * queue names are restricted to [A-Za-z0-9_] (pgmq only rejects a few
--     characters); names that differ only in case are rejected by create
--     because they would share tables;
--   * partitioned queues (pg_partman) are not supported;
--   * the insert-notify trigger fires once per statement, not once per row,
--     and still notifies if its throttle row was lost (the table is unlogged);
--   * purge_queue deletes rather than truncates, so it does not block
--     concurrent readers and its count is exact;
--   * send_batch rejects a headers array whose length differs from msgs.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE pgmq.meta (
    queue_name     varchar UNIQUE NOT NULL,
    is_partitioned boolean NOT NULL,
    is_unlogged    boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Throttle state for enable_notify_insert. Unlogged, as in pgmq: losing it
-- in a crash only means the next insert notifies unthrottled.
CREATE UNLOGGED TABLE pgmq.notify_insert_throttle (
    queue_name           varchar UNIQUE NOT NULL
                         REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    throttle_interval_ms integer NOT NULL DEFAULT 0,
    last_notified_at     timestamptz NOT NULL DEFAULT to_timestamp(0)
);

CREATE TYPE pgmq.message_record AS (
    msg_id       bigint,
    read_ct      integer,
    enqueued_at  timestamptz,
    last_read_at timestamptz,
    vt           timestamptz,
    message      jsonb,
    headers      jsonb
);

CREATE TYPE pgmq.queue_record AS (
    queue_name     varchar,
    is_partitioned boolean,
    is_unlogged    boolean,
    created_at     timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
    queue_name           text,
    queue_length         bigint,
    newest_msg_age_sec   integer,
    oldest_msg_age_sec   integer,
    total_messages       bigint,
    scrape_time          timestamptz,
    queue_visible_length bigint
);

------------------------------------------------------------------------------
-- Names
------------------------------------------------------------------------------

-- validate_queue_name raises a clear error unless queue_name is 1..47 ASCII
-- letters, digits or underscores (47 keeps every derived identifier, such as
-- archived_at_idx_<name>, within PostgreSQL's 63-byte limit).
CREATE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF queue_name IS NULL OR queue_name = '' THEN
        RAISE EXCEPTION 'invalid queue name: must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(queue_name) > 47 THEN
        RAISE EXCEPTION 'invalid queue name %: % characters, the maximum is 47',
            quote_literal(left(queue_name, 60)), length(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name !~ '^[A-Za-z0-9_]+$' THEN
        RAISE EXCEPTION 'invalid queue name %: only ASCII letters, digits and underscores are allowed',
            quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;

-- format_table_name returns the table name (without schema) of a queue's
-- live ('q') or archive ('a') table, validating the queue name first.
CREATE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    IF prefix IS NULL OR prefix !~ '^[a-z]$' THEN
        RAISE EXCEPTION 'invalid table prefix %', quote_nullable(prefix)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- _queue_table is format_table_name for a queue that must exist: it raises
-- 'queue "<name>" does not exist' (SQLSTATE 42P01) otherwise.
CREATE FUNCTION pgmq._queue_table(queue_name text, prefix text DEFAULT 'q')
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    tbl text := pgmq.format_table_name(queue_name, prefix);
BEGIN
    IF to_regclass(format('pgmq.%I', tbl)) IS NULL THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Create it with pgmq.create().';
    END IF;
    RETURN tbl;
END;
$fn$;

-- _lock_queue serialises create/drop of one queue (case-insensitively, like
-- the table names) until the end of the transaction.
CREATE FUNCTION pgmq._lock_queue(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pg_advisory_xact_lock(hashtext('pgmq.queue_' || lower(queue_name)));
$fn$;

------------------------------------------------------------------------------
-- Queue management
------------------------------------------------------------------------------

CREATE FUNCTION pgmq._create(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
    other  text;
BEGIN
    PERFORM pgmq._lock_queue(queue_name);

    SELECT m.queue_name INTO other
    FROM pgmq.meta m
    WHERE lower(m.queue_name) = lower(_create.queue_name)
      AND m.queue_name <> _create.queue_name;
    IF FOUND THEN
        RAISE EXCEPTION 'queue "%" conflicts with existing queue "%": names that differ only in case share tables',
            queue_name, other
            USING ERRCODE = 'duplicate_table';
    END IF;

    EXECUTE format(
        $q$
        CREATE %s TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            last_read_at timestamptz,
            vt           timestamptz NOT NULL DEFAULT clock_timestamp(),
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
CREATE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, false);
$fn$;

-- create creates a queue (idempotent); the same as create_non_partitioned.
CREATE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, false);
$fn$;

-- create_unlogged creates a queue whose live table is UNLOGGED: faster, but
-- emptied by crash recovery. The archive table is logged.
CREATE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._create(queue_name, true);
$fn$;

-- create_partitioned exists for API compatibility only.
CREATE FUNCTION pgmq.create_partitioned(
    queue_name         text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000'
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    RAISE EXCEPTION 'cannot create queue "%": partitioned queues are not supported without pg_partman', queue_name
        USING ERRCODE = 'feature_not_supported',
              HINT = 'This is QuantumFlow''s built-in pgmq; use pgmq.create() or install the pgmq extension with pg_partman.';
END;
$fn$;

-- drop_queue drops a queue, its archive and its notify settings. It returns
-- false (with a NOTICE) when the queue does not exist.
CREATE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    PERFORM pgmq._lock_queue(queue_name);
    IF to_regclass(format('pgmq.%I', qtable)) IS NULL
       AND NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name) THEN
        RAISE NOTICE 'pgmq queue "%" does not exist', queue_name;
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
    DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
    RETURN true;
END;
$fn$;

-- drop_queue(queue_name, partitioned) is pgmq's deprecated form; partitioned
-- is ignored.
CREATE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE sql
AS $fn$
    SELECT pgmq.drop_queue(queue_name);
$fn$;

-- purge_queue deletes every live message (not the archive) and returns how
-- many it deleted.
CREATE FUNCTION pgmq.purge_queue(queue_name text)
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

-- list_queues returns every queue, ordered by name.
CREATE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $fn$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
    FROM pgmq.meta m
    ORDER BY m.queue_name;
$fn$;

-- metrics reports one queue. Ages are whole seconds (NULL when the queue is
-- empty); total_messages counts every message ever sent (the identity
-- sequence); queue_visible_length counts messages readable right now.
CREATE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
    seq    text := pg_get_serial_sequence(format('pgmq.%I', qtable), 'msg_id');
    now_   timestamptz := clock_timestamp();
    result pgmq.metrics_result;
BEGIN
    EXECUTE format(
        $q$
        SELECT $1::text,
               count(*),
               extract(epoch FROM $2 - max(q.enqueued_at))::integer,
               extract(epoch FROM $2 - min(q.enqueued_at))::integer,
               (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM %s s),
               $2,
               count(*) FILTER (WHERE q.vt <= $2)
        FROM pgmq.%I q
        $q$,
        seq, qtable)
    INTO result
    USING queue_name, now_;
    RETURN result;
END;
$fn$;

-- metrics_all reports every queue, ordered by name.
CREATE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
        RETURN NEXT pgmq.metrics(name);
    END LOOP;
END;
$fn$;

------------------------------------------------------------------------------
-- Sending
------------------------------------------------------------------------------

-- send (queue_name, msg, headers, delay timestamptz) is the implementation
-- behind every send overload: the message becomes visible at delay.
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
        qtable)
    USING coalesce(delay, clock_timestamp()), msg, headers;
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp());
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp());
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, delay);
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

-- send_batch (queue_name, msgs, headers, delay timestamptz) is the
-- implementation behind every send_batch overload. Ids are returned in the
-- order of msgs; headers, when not NULL, must have one entry per message.
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    IF headers IS NOT NULL AND cardinality(headers) <> coalesce(cardinality(msgs), 0) THEN
        RAISE EXCEPTION 'send_batch: % headers for % messages; pass one headers value per message or NULL',
            cardinality(headers), coalesce(cardinality(msgs), 0)
            USING ERRCODE = 'invalid_parameter_value';
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
    USING coalesce(delay, clock_timestamp()), msgs, headers;
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp());
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp());
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay);
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------

-- read claims up to qty visible messages (oldest id first; rows locked by
-- other readers are skipped), hides them for vt seconds, counts the read and
-- returns them. conditional, when not '{}', keeps only messages containing it
-- (jsonb @>).
CREATE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
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
CREATE FUNCTION pgmq.read_with_poll(
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
DECLARE
    stop_at timestamptz;
    rest    interval;
BEGIN
    PERFORM pgmq._queue_table(queue_name, 'q');
    IF poll_interval_ms IS NULL OR poll_interval_ms < 1 THEN
        RAISE EXCEPTION 'read_with_poll: poll_interval_ms must be at least 1, got %', poll_interval_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    stop_at := clock_timestamp() + make_interval(secs => coalesce(max_poll_seconds, 0));
    LOOP
        RETURN QUERY SELECT * FROM pgmq.read(queue_name, vt, qty, conditional);
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

-- pop claims and deletes up to qty visible messages in one step (at-most-once
-- delivery). read_ct is not incremented.
CREATE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
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
CREATE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
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
CREATE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE sql
AS $fn$
    SELECT EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id]));
$fn$;

-- delete (batch) deletes messages and returns the ids it deleted; ids that
-- are not in the queue are ignored.
CREATE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
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
CREATE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
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

-- set_vt (batch, timestamp) makes messages visible at vt and returns them.
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamptz)
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
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.set_vt(queue_name, msg_ids, clock_timestamp() + make_interval(secs => vt));
$fn$;

-- set_vt (single, timestamp) makes one message visible at vt and returns it
-- (no row when it is not in the queue).
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.set_vt(queue_name, ARRAY[msg_id], vt);
$fn$;

-- set_vt (single, seconds) makes one message visible vt seconds from now.
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
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
CREATE FUNCTION pgmq.notify_queue_listeners()
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
CREATE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    IF throttle_interval_ms IS NULL OR throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'enable_notify_insert: throttle_interval_ms must be non-negative, got %',
            throttle_interval_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = enable_notify_insert.queue_name) THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name
            USING ERRCODE = 'undefined_table';
    END IF;
    INSERT INTO pgmq.notify_insert_throttle AS t (queue_name, throttle_interval_ms)
    VALUES (enable_notify_insert.queue_name, enable_notify_insert.throttle_interval_ms)
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

-- disable_notify_insert stops insert notifications for the queue.
CREATE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq._queue_table(queue_name, 'q');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger tg
               WHERE tg.tgrelid = format('pgmq.%I', qtable)::regclass
                 AND tg.tgname = 'trigger_notify_queue_insert_listeners') THEN
        EXECUTE format('DROP TRIGGER trigger_notify_queue_insert_listeners ON pgmq.%I', qtable);
    END IF;
    DELETE FROM pgmq.notify_insert_throttle t WHERE t.queue_name = disable_notify_insert.queue_name;
END;
$fn$;
