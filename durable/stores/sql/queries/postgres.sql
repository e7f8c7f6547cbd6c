-- The PostgreSQL store's statements (see durable/stores/sql/loader.py for the format).
--
-- Parameters are psycopg's %(named)s. Times are timestamptz; every "now" is a parameter
-- from the engine's clock, never the server's. A list parameter is an array, matched with
-- = ANY(...); a filter given as NULL applies no restriction (cast, so that PostgreSQL
-- knows the type of a NULL).
--
-- A fenced write matches only while the caller's claim holds (its token, status running)
-- and refuses to apply twice: a retry of a transition whose first try committed finds its
-- own write id on the row, and the store reports it done.
--
-- The hot transitions (create, claim, complete_next, finish_run, retry, restart)
-- are each one statement, run in autocommit: one round trip, one transaction. Those that
-- store an attempt record do it in the same statement (u: the fenced update); those that
-- end an execution or unit also tell, in it, what the end changes for others.


-- name: has_migrations
-- (to_regclass resolves through search_path, as the store's own statements do)
SELECT CASE WHEN to_regclass('durable_migrations') IS NULL THEN 0 ELSE 1 END AS present;

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM durable_migrations;

-- name: server_time
-- The server's clock, to compare a worker's with (never used for a decision in SQL).
SELECT clock_timestamp() AS now;

-- name: notify
-- Wake idle workers, in every process, after a commit that made work available.
SELECT pg_notify('durable_work', '');

-- name: listen
LISTEN durable_work;
LISTEN durable_done;
LISTEN durable_cancel;

-- name: notify_cancel
-- Tell workers, in every process, that a cancel was requested: each looks whether a step
-- it runs was cancelled (delivered when the cancel commits).
SELECT pg_notify('durable_cancel', '');

-- name: cancel_requested_among
-- Which of these executions (or units) have a cancel requested.
SELECT id FROM durable_executions WHERE id = ANY(%(ids)s) AND cancel_requested;

-- name: notify_done
-- Tell whoever waits for an execution (engine.wait), in every process, that it ended:
-- delivered when the transaction that ended it commits.
SELECT pg_notify('durable_done', %(id)s);


-- name: create
-- A new execution (and a notification); nothing when its idempotency key is taken.
WITH i AS (
    INSERT INTO durable_executions (
        id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
        run_at, timeout_ms, idempotency_key, step_index, step_name, attempt, token,
        cancel_requested, claimable_at, max_attempts, parent_id, origin, shape, headers, parent_step
    ) VALUES (
        %(id)s, %(workflow)s, %(status)s, %(queue)s, %(priority)s, %(input)s, %(context)s,
        %(created_at)s, %(scheduled_at)s, %(run_at)s, %(timeout_ms)s, %(idempotency_key)s,
        %(step_index)s, %(step_name)s, %(attempt)s, %(token)s, FALSE, %(claimable_at)s,
        %(max_attempts)s, %(parent_id)s, %(origin)s, %(shape)s, %(headers)s, %(parent_step)s
    )
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING
        seq, id, workflow, status, queue, priority, input, context, created_at,
        scheduled_at, run_at, timeout_ms, idempotency_key, started_at, completed_at,
        deadline, step_index, step_name, attempt, attempt_started_at, error, token,
        worker_id, lease_expires_at, cancel_requested, cancel_reason, suspended, last_write,
        lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
), n AS (SELECT pg_notify('durable_work', ''))
SELECT i.* FROM i, n;

-- name: by_key
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE idempotency_key = %(key)s;

-- name: get
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE id = %(id)s;

-- name: get_for_update
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE id = %(id)s FOR UPDATE;

-- name: live
-- An execution's state, its row locked (PostgreSQL) for an event, an input, or a unit's
-- wait on its events.
SELECT status, step_name, step_visit, parent_id, unit FROM durable_executions WHERE id = %(id)s FOR UPDATE;

-- name: steps
SELECT
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
FROM durable_step_attempts
WHERE execution_id = %(id)s
   OR execution_id IN (
       SELECT id FROM durable_executions WHERE parent_id = %(id)s AND unit IS NOT NULL
   )
ORDER BY seq;

-- name: own_steps
-- As steps, without its units' attempts.
SELECT
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
FROM durable_step_attempts
WHERE execution_id = %(id)s
ORDER BY seq;

-- name: list
-- Newest first, by any filters (NULL: all); walks the created index. The store takes
-- one of the list_by_ blocks when a filter can choose an index instead.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_by_status
-- As list, for exactly one status: walks that status in the status index, in order. (A
-- row running its compensations is pending, running or waiting, but reads compensating.)
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE status = %(status)s AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_by_statuses
-- As list, for several statuses: each from the status index, then sorted.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE status = ANY(%(statuses)s) AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_compensating
-- As list, for the executions running their compensations (rare: their own index).
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE phase = 'compensate' AND completed_at IS NULL AND unit IS NULL
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_by_workflow
-- As list, for exactly one workflow: walks that workflow in its index, in order.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE workflow = %(workflow)s
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_by_workflow_status
-- As list, for exactly one workflow and one status: walks that pair in the workflow and
-- status index (v15), in order.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE workflow = %(workflow)s AND status = %(status)s
  AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_by_queue
-- As list, for exactly one queue (and no status or workflow filter): walks that queue in
-- the queue index (v16), in order, so a queue nothing is on is found empty at once.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE queue = %(queue)s
  AND unit IS NULL
  AND (%(parent)s::text IS NULL OR parent_id = %(parent)s)
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: list_children
-- As list, for the child workflows of one execution (parent): walks its children in the
-- children index (v15), never its units.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE parent_id = %(parent)s AND unit IS NULL
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s)
       AND (phase = 'run' OR completed_at IS NOT NULL))
  AND (created_at, seq) < (%(before_at)s, %(before_seq)s)
ORDER BY created_at DESC, seq DESC
LIMIT %(limit)s;

-- name: next_due
SELECT min(claimable_at) AS due FROM durable_executions
WHERE claimable_at IS NOT NULL
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
HAVING min(claimable_at) IS NOT NULL;


-- name: claim
-- Take the due rows, best first, skipping those another worker is taking; c remembers,
-- before the update, whether an attempt was in flight. A timeout past what a store holds
-- (written by an older version) is left for the store to fail that row alone, not
-- computed: it could overflow the interval.
WITH c AS (
    SELECT seq, attempt_started_at IS NULL AS fresh, claimable_at AS due
    FROM durable_executions
    WHERE claimable_at <= %(now)s AND status IN ('pending', 'running', 'waiting')
      AND workflow = ANY(%(workflows)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
    ORDER BY priority DESC, scheduled_at, created_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE durable_executions AS e SET
    status = 'running', token = token + 1, worker_id = %(worker)s,
    lease_expires_at = %(expires)s, claimable_at = %(expires)s, run_at = NULL,
    started_at = coalesce(started_at, %(now)s),
    deadline = CASE WHEN deadline IS NULL AND timeout_ms IS NOT NULL
                    AND timeout_ms <= %(max_timeout_ms)s
               THEN %(now)s + timeout_ms * INTERVAL '1 millisecond' ELSE deadline END,
    attempt = CASE WHEN attempt_started_at IS NULL AND NOT suspended THEN attempt + 1
              ELSE attempt END,
    attempt_started_at = coalesce(attempt_started_at, %(now)s)
FROM c WHERE e.seq = c.seq
RETURNING
    e.seq, e.id, e.workflow, e.status, e.queue, e.priority, e.input, e.context,
    e.created_at, e.scheduled_at, e.run_at, e.timeout_ms, e.idempotency_key, e.started_at,
    e.completed_at, e.deadline, e.step_index, e.step_name, e.attempt, e.attempt_started_at,
    e.error, e.token, e.worker_id, e.lease_expires_at, e.cancel_requested, e.cancel_reason,
    e.suspended, e.last_write, e.lost_attempts, e.max_attempts,
    e.step_visit, e.visits, e.parent_id, e.unit, e.group_step, e.group_visit, e.unit_index,
    e.stops_group, e.item, e.result, e.open_units, e.phase, e.origin, e.shape, e.headers, e.parent_step, c.fresh,
    c.due;

-- name: set_deadline
UPDATE durable_executions SET deadline = %(deadline)s WHERE seq = %(seq)s;

-- name: heartbeat
UPDATE durable_executions SET lease_expires_at = %(expires)s, claimable_at = %(expires)s
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
RETURNING id;

-- name: insert_attempt
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
) VALUES (
    %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
    %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
    %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
);

-- name: complete_next
WITH u AS (
    UPDATE durable_executions SET
        context = %(context)s, step_index = %(next_index)s, step_name = %(next_name)s,
        suspended = FALSE, attempt = %(next_attempt)s, attempt_started_at = %(next_started)s,
        lost_attempts = 0, max_attempts = %(next_max)s, last_write = %(write_id)s,
        step_visit = %(next_visit)s, visits = coalesce(%(visits)s, visits)
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
      AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
    RETURNING status
)
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
)
SELECT %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
    %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
    %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
FROM u
RETURNING (SELECT status FROM u) AS status;

-- name: finish_run
-- The execution (or unit) ends with :status: completed (its context and result kept) or
-- failed out of attempts (its error kept), with its attempt record. In a transaction,
-- where the store then does what the end tells others (see finish_alone).
WITH u AS (
    UPDATE durable_executions SET
        context = coalesce(%(context)s, context), status = %(status)s, completed_at = %(now)s,
        result = %(result)s, error = %(error)s,
        last_write = %(write_id)s, run_at = NULL, lease_expires_at = NULL, worker_id = NULL,
        attempt_started_at = NULL, claimable_at = NULL, suspended = FALSE
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
      AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
    RETURNING status
)
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
)
SELECT %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
    %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
    %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
FROM u
RETURNING (SELECT status FROM u) AS status;

-- name: finish_alone
-- As finish_run, with everything its end tells others in this one statement, run as its
-- own transaction (so no lock it takes is held while the worker's thread waits to send a
-- COMMIT): engine.wait (NOTIFY durable_done), a unit's group (its count, the fan-in, the
-- next parked unit), idle workers (NOTIFY durable_work). It matches nothing for the ends
-- it does not do: a child's (its caller is told in finish_run's transaction) and a
-- failure that stops its group (fail-fast).
WITH u AS (
    UPDATE durable_executions SET
        context = coalesce(%(context)s, context), status = %(status)s, completed_at = %(now)s,
        result = %(result)s, error = %(error)s,
        last_write = %(write_id)s, run_at = NULL, lease_expires_at = NULL, worker_id = NULL,
        attempt_started_at = NULL, claimable_at = NULL, suspended = FALSE
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
      AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
      AND (parent_id IS NULL OR unit IS NOT NULL)
      AND NOT (stops_group AND %(status)s <> 'completed')
      -- (an execution a schedule started may let its buffered one in: finish_run does)
      AND (origin IS NULL OR strpos(origin, '"schedule"') = 0)
    RETURNING id, status, parent_id, unit, group_step, group_visit, unit_index
), ins AS (
    INSERT INTO durable_step_attempts (
        execution_id, step_index, name, attempt, status, started_at, completed_at, error,
        logs, max_attempts, retry_at, result, visit, phase, compensates, changes
    )
    SELECT %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
        %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
        %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
    FROM u
    RETURNING 1
), told AS (
    -- whoever waits for this execution's end (engine.wait), in any process
    SELECT pg_notify('durable_done', u.id) FROM u WHERE u.unit IS NULL
), dec AS (
    -- a unit's end: its row of the group's count (see GROUP_SHARDS) goes down
    UPDATE durable_group_counts AS c SET open_units = c.open_units - 1
    FROM u
    WHERE u.unit IS NOT NULL AND c.parent_id = u.parent_id AND c.group_step = u.group_step
      AND c.group_visit = u.group_visit AND c.shard = u.unit_index %% %(shards)s
    RETURNING c.open_units
), p AS (
    -- only the end that empties its count row touches the execution's row: one fewer
    -- open row; none left lets it run again
    UPDATE durable_executions AS p SET
        open_units = p.open_units - 1,
        status = CASE WHEN p.open_units <= 1 THEN 'pending' ELSE p.status END,
        run_at = CASE WHEN p.open_units <= 1 THEN %(now)s ELSE p.run_at END,
        claimable_at = CASE WHEN p.open_units <= 1 THEN %(now)s ELSE p.claimable_at END
    FROM u
    WHERE EXISTS (SELECT 1 FROM dec WHERE dec.open_units = 0) AND p.id = u.parent_id
      AND p.status = 'waiting' AND p.step_name = u.group_step AND p.step_visit = u.group_visit
    RETURNING p.id, p.status
), g AS (
    -- the group goes on: its execution still waits at it
    SELECT u.parent_id, u.group_step, u.group_visit FROM u
    JOIN durable_executions AS w ON w.id = u.parent_id
    WHERE u.unit IS NOT NULL AND w.status = 'waiting' AND w.step_name = u.group_step
      AND w.step_visit = u.group_visit
), let_in AS (
    -- its lowest parked unit that no other end is letting in now; one locked by anything
    -- else (all of them locked: let_in_later) is let in by the store after this statement
    UPDATE durable_executions AS n SET run_at = %(now)s, claimable_at = %(now)s
    WHERE n.seq = (
        SELECT q.seq FROM durable_executions AS q
        WHERE q.parent_id = (SELECT parent_id FROM g) AND q.group_step = (SELECT group_step FROM g)
          AND q.group_visit = (SELECT group_visit FROM g) AND q.unit IS NOT NULL
          AND q.status = 'pending' AND q.claimable_at IS NULL
        ORDER BY q.unit_index LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING n.seq
), work AS (
    -- the execution can run again: idle workers hear of it at this commit
    SELECT pg_notify('durable_work', '') FROM p WHERE p.status = 'pending'
)
-- (the updates and inserts above run whether read or not; the notifying SELECTs run
-- because they are read here)
SELECT u.id, u.status, u.parent_id, u.group_step, u.group_visit,
    (SELECT count(*) FROM told) + (SELECT count(*) FROM work) AS notified,
    NOT EXISTS (SELECT 1 FROM let_in) AND EXISTS (
        SELECT 1 FROM durable_executions AS q
        WHERE q.parent_id = (SELECT parent_id FROM g) AND q.group_step = (SELECT group_step FROM g)
          AND q.group_visit = (SELECT group_visit FROM g) AND q.unit IS NOT NULL
          AND q.status = 'pending' AND q.claimable_at IS NULL
    ) AS let_in_later
FROM u;

-- name: retry
WITH u AS (
    UPDATE durable_executions SET
        status = 'pending', run_at = %(retry_at)s, claimable_at = %(retry_at)s,
        lease_expires_at = NULL, worker_id = NULL, attempt_started_at = NULL,
        suspended = FALSE, max_attempts = %(a_max_attempts)s, last_write = %(write_id)s
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
      AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
    RETURNING status
)
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
)
SELECT %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
    %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
    %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
FROM u
RETURNING (SELECT status FROM u) AS status;

-- name: restart
WITH u AS (
    UPDATE durable_executions SET
        attempt_started_at = %(now)s, lost_attempts = lost_attempts + 1,
        last_write = %(write_id)s
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
      AND coalesce(last_write, '') <> %(write_id)s
    RETURNING status
)
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
)
SELECT %(a_execution_id)s, %(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s,
    %(a_started_at)s, %(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s,
    %(a_retry_at)s, %(a_result)s, %(a_visit)s, %(a_phase)s, %(a_compensates)s, %(a_changes)s
FROM u
RETURNING (SELECT status FROM u) AS status;

-- name: end
UPDATE durable_executions SET
    status = %(status)s, completed_at = %(now)s, error = %(error)s, last_write = %(write_id)s,
    run_at = NULL, lease_expires_at = NULL, worker_id = NULL, attempt_started_at = NULL,
    claimable_at = NULL, suspended = FALSE
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
  AND coalesce(last_write, '') <> %(write_id)s
RETURNING status;

-- name: release
UPDATE durable_executions SET
    status = 'pending', run_at = %(run_at)s, claimable_at = %(run_at)s, lease_expires_at = NULL,
    worker_id = NULL,
    attempt = CASE WHEN %(ran)s OR attempt_started_at IS NULL OR suspended THEN attempt
              ELSE attempt - 1 END,
    last_write = %(write_id)s,
    attempt_started_at = CASE WHEN %(ran)s THEN attempt_started_at ELSE NULL END
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
  AND coalesce(last_write, '') <> %(write_id)s
RETURNING status;

-- name: suspend
UPDATE durable_executions SET
    status = %(status)s, run_at = %(wake)s, claimable_at = %(wake)s, lease_expires_at = NULL,
    worker_id = NULL, attempt_started_at = NULL, suspended = TRUE, last_write = %(write_id)s,
    lost_attempts = 0
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
  AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
RETURNING status, deadline;

-- name: wake
UPDATE durable_executions SET status = 'pending', run_at = %(now)s, claimable_at = %(now)s
WHERE id = %(id)s AND status = 'waiting';

-- name: retry_execution
-- An execution that ended failed, cancelled or compensated goes back to pending at a step
-- (engine.retry): its flow again, a new visit of that step, the context rebuilt as it
-- was before it, a fresh workflow timeout from its next claim.
UPDATE durable_executions SET
    status = 'pending', phase = 'run', run_at = %(now)s, claimable_at = %(now)s,
    completed_at = NULL, error = NULL, result = NULL, cancel_requested = FALSE,
    cancel_reason = NULL, lease_expires_at = NULL, worker_id = NULL, attempt = 0,
    attempt_started_at = NULL, suspended = FALSE, lost_attempts = 0, open_units = 0,
    deadline = NULL, max_attempts = %(max_attempts)s, step_index = %(step_index)s,
    step_name = %(step_name)s, step_visit = %(visit)s, visits = %(visits)s,
    context = %(context)s, origin = coalesce(%(origin)s, origin)
WHERE id = %(id)s AND unit IS NULL AND status IN ('failed', 'cancelled', 'compensated')
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;

-- name: compensate
-- The claimed execution enters its compensate phase (see Store.compensate): pending at
-- once, nothing in flight, its failure kept, a cancel request cleared.
UPDATE durable_executions SET
    phase = 'compensate', status = 'pending', run_at = %(now)s, claimable_at = %(now)s,
    lease_expires_at = NULL, worker_id = NULL, attempt = 0, attempt_started_at = NULL,
    suspended = FALSE, lost_attempts = 0, max_attempts = 1, cancel_requested = FALSE,
    open_units = 0, error = %(error)s, last_write = %(write_id)s
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
  AND coalesce(last_write, '') <> %(write_id)s
RETURNING status;

-- name: cancel_compensate
-- A cancel of an execution nothing runs now, whose workflow compensates: it enters its
-- compensate phase at once (as compensate does), the cancel's reason kept.
UPDATE durable_executions SET
    phase = 'compensate', status = 'pending', run_at = %(now)s, claimable_at = %(now)s,
    lease_expires_at = NULL, worker_id = NULL, attempt = 0, attempt_started_at = NULL,
    suspended = FALSE, lost_attempts = 0, max_attempts = 1, cancel_requested = FALSE,
    open_units = 0, error = %(error)s, cancel_reason = %(reason)s
WHERE id = %(id)s
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;

-- name: cancel
-- Mark the cancel; with at_once (nothing runs it now) end the execution as well. With
-- mark (a running execution whose workflow compensates) mark its phase compensate: its
-- next checkpoint starts its compensations instead of ending it.
UPDATE durable_executions SET
    cancel_requested = TRUE, cancel_reason = %(reason)s,
    phase = CASE WHEN %(mark)s THEN 'compensate' ELSE phase END,
    status = CASE WHEN %(at_once)s THEN 'cancelled' ELSE status END,
    completed_at = CASE WHEN %(at_once)s THEN %(now)s ELSE completed_at END,
    run_at = CASE WHEN %(at_once)s THEN NULL ELSE run_at END,
    lease_expires_at = CASE WHEN %(at_once)s THEN NULL ELSE lease_expires_at END,
    worker_id = CASE WHEN %(at_once)s THEN NULL ELSE worker_id END,
    attempt_started_at = CASE WHEN %(at_once)s THEN NULL ELSE attempt_started_at END,
    claimable_at = CASE WHEN %(at_once)s THEN NULL ELSE claimable_at END,
    suspended = CASE WHEN %(at_once)s THEN FALSE ELSE suspended END
WHERE id = %(id)s
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;


-- name: wait_get
SELECT
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit
FROM durable_waits
WHERE execution_id = %(id)s AND step = %(step)s AND visit = %(visit)s
  AND wait_seq = %(wseq)s;

-- name: wait_insert
INSERT INTO durable_waits (
    execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status, created_at,
    prompt, input_schema, visit, parent_id
) VALUES (
    %(id)s, %(step)s, %(wseq)s, %(attempt)s, %(kind)s, %(names)s, %(mode)s, %(until)s,
    'pending', %(now)s, %(prompt)s, %(schema)s, %(visit)s, %(parent)s
)
RETURNING
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit;

-- name: wait_renew
UPDATE durable_waits SET
    attempt = %(attempt)s, kind = %(kind)s, names = %(names)s, mode = %(mode)s,
    until_at = %(until)s, status = 'pending', created_at = %(now)s, prompt = %(prompt)s,
    input_schema = %(schema)s, result = NULL, resolved_at = NULL
WHERE seq = %(wid)s
RETURNING
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit;

-- name: wait_set
UPDATE durable_waits SET status = %(status)s, result = %(result)s, resolved_at = %(now)s
WHERE seq = %(wid)s AND status = 'pending';

-- name: wait_suspended_on
SELECT
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit
FROM durable_waits
WHERE execution_id = %(id)s AND step = %(step)s AND visit = %(visit)s
  AND status = 'pending'
ORDER BY wait_seq DESC
LIMIT 1;

-- name: waits_pending
-- Pending waits of unfinished executions, oldest first, by any filters (one
-- execution's: waits_of).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE w.status = 'pending' AND e.status IN ('pending', 'running', 'waiting', 'compensating')
  AND (%(workflow)s::text IS NULL OR e.workflow = %(workflow)s)
  AND (%(open_at)s::timestamptz IS NULL OR w.until_at IS NULL OR w.until_at >= %(open_at)s)
  AND (%(kind)s::text IS NULL OR w.kind = %(kind)s)
ORDER BY w.created_at, w.seq
LIMIT %(limit)s;

-- name: waits_all
-- Every wait, oldest first, by any filters (one execution's: waits_of).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE (%(workflow)s::text IS NULL OR e.workflow = %(workflow)s)
  AND (%(open_at)s::timestamptz IS NULL OR w.until_at IS NULL OR w.until_at >= %(open_at)s)
  AND (%(kind)s::text IS NULL OR w.kind = %(kind)s)
ORDER BY w.created_at, w.seq
LIMIT %(limit)s;

-- name: waits_of
-- As waits_pending (pending_only) or waits_all, for one execution: its own waits and its
-- units' (by the parent_id of their waits, v15), two index lookups however many units.
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE (w.execution_id = %(execution_id)s OR w.parent_id = %(execution_id)s)
  AND (NOT %(pending_only)s OR w.status = 'pending'
       AND e.status IN ('pending', 'running', 'waiting', 'compensating'))
  AND (%(workflow)s::text IS NULL OR e.workflow = %(workflow)s)
  AND (%(open_at)s::timestamptz IS NULL OR w.until_at IS NULL OR w.until_at >= %(open_at)s)
  AND (%(kind)s::text IS NULL OR w.kind = %(kind)s)
ORDER BY w.created_at, w.seq
LIMIT %(limit)s;

-- name: waits_recent
-- The newest waits of one execution (its units' too), whatever their status, newest
-- first, at most %(limit)s; each row carries how many it has in all (total).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow,
    (SELECT count(*) FROM durable_waits x
     WHERE x.execution_id = %(execution_id)s OR x.parent_id = %(execution_id)s) AS total
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE w.execution_id = %(execution_id)s OR w.parent_id = %(execution_id)s
ORDER BY w.created_at DESC, w.seq DESC
LIMIT %(limit)s;

-- name: inbox
-- The unconsumed events of an execution with one of :names, in order.
SELECT seq, name, payload, sent_at FROM durable_events
WHERE execution_id = %(id)s AND consumed_at IS NULL AND name = ANY(%(names)s)
ORDER BY seq;

-- name: consume
UPDATE durable_events SET consumed_at = %(now)s WHERE seq = ANY(%(seqs)s);

-- name: event_insert
INSERT INTO durable_events (execution_id, name, payload, sent_at)
VALUES (%(id)s, %(name)s, %(payload)s, %(now)s);


-- name: purge_pick
-- Finished executions, oldest first; two purges at once take different rows.
SELECT id FROM durable_executions
WHERE unit IS NULL AND completed_at < %(before)s
  AND status IN ('completed', 'failed', 'cancelled', 'compensated')
  AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
ORDER BY completed_at, seq
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: purge
-- Delete the picked executions (ids) and what they own; the last returns what it deleted.
DELETE FROM durable_events WHERE execution_id = ANY(%(ids)s);
DELETE FROM durable_waits WHERE execution_id = ANY(%(ids)s);
DELETE FROM durable_step_attempts WHERE execution_id = ANY(%(ids)s);
DELETE FROM durable_group_counts WHERE parent_id = ANY(%(ids)s);
DELETE FROM durable_executions WHERE id = ANY(%(ids)s) RETURNING id;


-- Units (parallel branches, foreach items) and child workflows -------------------------

-- name: unit_insert
-- Every unit of a fork in one statement. %(units)s is a JSON array with one array per
-- unit, in order: [id, name, index, max_attempts, context (JSON text, null: {}), item
-- (JSON text)]; units below index %(concurrency)s (all when NULL) are claimable at once,
-- the others parked (pending, not claimable). A fork of many units runs it once per
-- batch. A unit's id is derived from its place, so a repeated fork adds nothing. Units
-- share their execution's headers.
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, claimable_at, deadline, step_index, step_name, attempt, token, cancel_requested,
    max_attempts, parent_id, unit, group_step, group_visit, unit_index, stops_group, item,
    step_visit, headers
)
SELECT
    e.u ->> 0, %(workflow)s, 'pending', %(queue)s, %(priority)s, 'null',
    coalesce(e.u ->> 4, '{}'), %(now)s, %(scheduled_at)s, a.run_at, a.run_at, %(deadline)s,
    0, e.u ->> 1, 0, 0, FALSE, (e.u ->> 3)::int, %(parent)s, e.u ->> 1, %(step)s,
    %(visit)s, (e.u ->> 2)::int, %(stops)s, e.u ->> 5, %(visit)s, %(headers)s
FROM json_array_elements(%(units)s::json) WITH ORDINALITY AS e(u, n)
CROSS JOIN LATERAL (
    SELECT CASE WHEN %(concurrency)s::int IS NULL OR (e.u ->> 2)::int < %(concurrency)s::int
                THEN %(now)s::timestamptz END AS run_at
) AS a
ORDER BY e.n
ON CONFLICT (id) DO NOTHING;

-- name: fork_wait
-- The execution waits for its units (or, with none, is pending at once).
UPDATE durable_executions SET
    status = %(status)s, run_at = %(wake)s, claimable_at = %(wake)s, lease_expires_at = NULL,
    worker_id = NULL, attempt_started_at = NULL, suspended = TRUE, lost_attempts = 0,
    open_units = %(open)s, last_write = %(write_id)s
WHERE id = %(id)s AND token = %(token)s AND status = 'running'
  AND coalesce(last_write, '') <> %(write_id)s AND NOT cancel_requested
RETURNING status;

-- name: units
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE parent_id = %(id)s AND group_step = %(step)s AND group_visit = %(visit)s
  AND unit IS NOT NULL
ORDER BY unit_index;

-- name: unit_outcomes
-- How each unit of a group run ended, by index, a page at a time (the units after index
-- %(after)s, at most %(limit)s of them; NULL: all): what its join reads.
SELECT unit_index, unit, status, created_at, completed_at, result, error
FROM durable_executions
WHERE parent_id = %(id)s AND group_step = %(step)s AND group_visit = %(visit)s
  AND unit IS NOT NULL AND unit_index > %(after)s
ORDER BY unit_index
LIMIT %(limit)s;

-- name: unit_states
-- How many units of a group run stand each way: by status, whether an attempt began,
-- and whether it is suspended on a wait (the store names each way: base.unit_state).
SELECT status, attempt > 0 AS began, suspended, count(*) AS n
FROM durable_executions
WHERE parent_id = %(id)s AND group_step = %(step)s AND group_visit = %(visit)s
  AND unit IS NOT NULL
GROUP BY status, attempt > 0, suspended;

-- name: ended_row
-- After a transition ended a row: what its parent needs to hear.
SELECT id, status, parent_id, unit, group_step, group_visit, unit_index, stops_group,
    context, error, origin
FROM durable_executions WHERE id = %(id)s;

-- name: group_counts_insert
-- A group run's count of open units, in the rows %(counts)s gives: a JSON array of
-- [shard, open units]. Repeated, it adds nothing.
INSERT INTO durable_group_counts (parent_id, group_step, group_visit, shard, open_units)
SELECT %(parent)s, %(step)s, %(visit)s, (e.c ->> 0)::int, (e.c ->> 1)::int
FROM json_array_elements(%(counts)s::json) AS e(c)
ON CONFLICT DO NOTHING;

-- name: shard_count_down
-- A unit ended: its row of the group's count goes down (what is left comes back).
UPDATE durable_group_counts SET open_units = open_units - 1
WHERE parent_id = %(parent)s AND group_step = %(step)s AND group_visit = %(visit)s
  AND shard = %(shard)s
RETURNING open_units;

-- name: group_count_down
-- The end that emptied a count row (:emptied 1), or a stopping failure: one fewer open
-- row; none left, or the failure, lets the execution run again. Only while it waits at
-- that group run.
UPDATE durable_executions SET
    open_units = open_units - %(emptied)s,
    status = CASE WHEN open_units - %(emptied)s <= 0 OR %(stop)s THEN 'pending'
                  ELSE status END,
    run_at = CASE WHEN open_units - %(emptied)s <= 0 OR %(stop)s THEN %(now)s ELSE run_at END,
    claimable_at = CASE WHEN open_units - %(emptied)s <= 0 OR %(stop)s THEN %(now)s
                        ELSE claimable_at END
WHERE id = %(parent)s AND status = 'waiting' AND step_name = %(step)s AND step_visit = %(visit)s
RETURNING status;

-- name: group_activate
-- Let the group's lowest parked unit be claimed, while the execution waits at that group
-- run: one that no other end is letting in now (none: the store calls group_activate_wait
-- after its commit).
UPDATE durable_executions SET run_at = %(now)s, claimable_at = %(now)s
WHERE seq = (
    SELECT seq FROM durable_executions
    WHERE parent_id = %(parent)s AND group_step = %(step)s AND group_visit = %(visit)s
      AND unit IS NOT NULL AND status = 'pending' AND claimable_at IS NULL
      AND EXISTS (
          SELECT 1 FROM durable_executions AS w
          WHERE w.id = %(parent)s AND w.status = 'waiting' AND w.step_name = %(step)s
            AND w.step_visit = %(visit)s
      )
    ORDER BY unit_index
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING seq;

-- name: group_parked
-- Whether the group still has a parked unit (while the execution waits at it).
SELECT 1 AS parked FROM durable_executions
WHERE parent_id = %(parent)s AND group_step = %(step)s AND group_visit = %(visit)s
  AND unit IS NOT NULL AND status = 'pending' AND claimable_at IS NULL
  AND EXISTS (
      SELECT 1 FROM durable_executions AS w
      WHERE w.id = %(parent)s AND w.status = 'waiting' AND w.step_name = %(step)s
        AND w.step_visit = %(visit)s
  )
LIMIT 1;

-- name: group_activate_wait
-- Let the group's lowest parked unit in, waiting for its row if something else holds it
-- (run on its own, after the end that owed the group a place committed, so that it holds
-- no other lock). No row back: that unit was let in or ended meanwhile; the store looks
-- again.
UPDATE durable_executions SET run_at = %(now)s, claimable_at = %(now)s
WHERE seq = (
    SELECT seq FROM durable_executions
    WHERE parent_id = %(parent)s AND group_step = %(step)s AND group_visit = %(visit)s
      AND unit IS NOT NULL AND status = 'pending' AND claimable_at IS NULL
    ORDER BY unit_index
    LIMIT 1
)
  AND status = 'pending' AND claimable_at IS NULL
  AND EXISTS (
      SELECT 1 FROM durable_executions AS w
      WHERE w.id = %(parent)s AND w.status = 'waiting' AND w.step_name = %(step)s
        AND w.step_visit = %(visit)s
  )
RETURNING seq;

-- name: cancel_units
-- Cancel an execution's unfinished units (of one group run, or all when step is NULL):
-- a running one with a live lease at its next checkpoint, the others at once (no attempt
-- left in flight).
UPDATE durable_executions SET
    cancel_requested = TRUE, cancel_reason = %(reason)s,
    status = CASE WHEN status = 'running' AND lease_expires_at > %(now)s THEN status
                  ELSE 'cancelled' END,
    completed_at = CASE WHEN status = 'running' AND lease_expires_at > %(now)s THEN completed_at
                        ELSE %(now)s END,
    run_at = CASE WHEN status = 'running' AND lease_expires_at > %(now)s THEN run_at ELSE NULL END,
    claimable_at = CASE WHEN status = 'running' AND lease_expires_at > %(now)s THEN claimable_at
                        ELSE NULL END,
    suspended = CASE WHEN status = 'running' AND lease_expires_at > %(now)s THEN suspended
                     ELSE FALSE END,
    attempt_started_at = CASE WHEN status = 'running' AND lease_expires_at > %(now)s
                              THEN attempt_started_at ELSE NULL END
WHERE parent_id = %(id)s AND unit IS NOT NULL
  AND status IN ('pending', 'running', 'waiting')
  AND (%(step)s::text IS NULL OR (group_step = %(step)s AND group_visit = %(visit)s));

-- name: live_children
-- The children a cancel reaches: unfinished, and not already running their compensations.
SELECT id FROM durable_executions
WHERE parent_id = %(id)s AND unit IS NULL
  AND status IN ('pending', 'running', 'waiting') AND phase = 'run';

-- name: waiting_units
-- An execution's units suspended on a wait, by the time they began waiting.
SELECT id, step_name, step_visit FROM durable_executions
WHERE parent_id = %(id)s AND unit IS NOT NULL AND status = 'waiting'
ORDER BY seq;

-- name: child_wait
-- The pending wait (in the parent or one of its units) for the child named by :names:
-- the parent's first, then by unit, step run and position (the same one every store
-- picks, should two wait for one child).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.status AS row_status, e.step_name AS row_step, e.step_visit AS row_visit
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE (e.id = %(parent)s OR (e.parent_id = %(parent)s AND e.unit IS NOT NULL))
  AND w.kind = 'child' AND w.names = %(names)s AND w.status = 'pending'
ORDER BY e.id <> %(parent)s, e.unit_index, w.step, w.visit, w.wait_seq
LIMIT 1;

-- name: units_of
-- The unit rows of the given executions (purged with them).
SELECT id FROM durable_executions
WHERE parent_id IN (SELECT unnest(%(ids)s::text[])) AND unit IS NOT NULL;

-- name: schedule_put
-- Store a schedule by name; an existing one keeps its next tick unless its cron or time
-- zone changed (then only while its next tick is still %(expected)s: else nothing, and the caller
-- reads it again), and its pause, last tick and execution, buffered execution and count.
INSERT INTO durable_schedules AS s (
    name, workflow, cron, timezone, input, catch_up, overlap, paused, declared, next_tick,
    last_tick, last_execution_id, buffered_id, missed, created_at, updated_at
) VALUES (
    %(name)s, %(workflow)s, %(cron)s, %(timezone)s, %(input)s, %(catch_up)s, %(overlap)s,
    %(paused)s, %(declared)s, %(next_tick)s, NULL, NULL, NULL, 0, %(now)s, %(now)s
)
ON CONFLICT (name) DO UPDATE SET
    workflow = excluded.workflow, input = excluded.input, catch_up = excluded.catch_up,
    overlap = excluded.overlap, declared = excluded.declared, updated_at = excluded.updated_at,
    next_tick = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
        THEN s.next_tick ELSE excluded.next_tick END,
    cron = excluded.cron, timezone = excluded.timezone
WHERE (s.cron = excluded.cron AND s.timezone = excluded.timezone)
   OR s.next_tick = %(expected)s
RETURNING *;

-- name: schedule_get
SELECT * FROM durable_schedules WHERE name = %(name)s;

-- name: schedule_list
SELECT * FROM durable_schedules ORDER BY name;

-- name: schedule_delete
DELETE FROM durable_schedules WHERE name = %(name)s RETURNING buffered_id;

-- name: schedule_pause
-- A pause keeps the next tick; a resume applies only to a paused schedule (so it never
-- moves the tick of one that fires meanwhile), from the next tick it was given.
UPDATE durable_schedules SET paused = %(paused)s,
    next_tick = CASE WHEN %(paused)s THEN next_tick ELSE %(next_tick)s END,
    updated_at = %(now)s
WHERE name = %(name)s AND (%(paused)s OR paused)
RETURNING *;

-- name: schedule_next_tick
-- The earliest tick due of the schedules not paused (of those workflows; NULL: all).
SELECT min(next_tick) AS due FROM durable_schedules
WHERE NOT paused AND (%(workflows)s::text[] IS NULL OR workflow = ANY(%(workflows)s))
HAVING min(next_tick) IS NOT NULL;

-- name: schedules_due
SELECT * FROM durable_schedules
WHERE next_tick <= %(now)s AND NOT paused AND workflow = ANY(%(workflows)s)
ORDER BY next_tick, name
LIMIT %(limit)s;

-- name: schedule_latest
-- The schedule's latest execution, locked first (an end that lets the buffered one in
-- locks it, then the schedule: the same order, no deadlock); none: no row.
SELECT e.id, e.status, e.phase FROM durable_schedules AS s
JOIN durable_executions AS e ON e.id = s.last_execution_id
WHERE s.name = %(name)s
FOR UPDATE OF e;

-- name: schedule_advance
-- A fire applies only while next_tick is the one the worker read: one worker per tick.
-- (An "allow" fire sets its last tick and execution here: it makes every row.)
UPDATE durable_schedules SET next_tick = %(next_tick)s, missed = missed + %(missed)s,
    updated_at = %(now)s, last_tick = coalesce(%(last_tick)s, last_tick),
    last_execution_id = coalesce(%(last_execution_id)s, last_execution_id)
WHERE name = %(name)s AND next_tick = %(expected)s AND NOT paused
RETURNING *;

-- name: schedule_fired
UPDATE durable_schedules SET last_tick = %(last_tick)s,
    last_execution_id = %(last_execution_id)s, buffered_id = %(buffered_id)s,
    missed = %(missed)s
WHERE name = %(name)s;

-- name: schedule_release
-- The schedule's latest execution ended: its buffered one (if any) becomes the latest.
UPDATE durable_schedules SET last_execution_id = buffered_id, buffered_id = NULL
WHERE name = %(name)s AND last_execution_id = %(id)s AND buffered_id IS NOT NULL
RETURNING last_execution_id AS buffered_id;

-- name: release_buffered
-- ... and is due now, unless it was cancelled meanwhile.
UPDATE durable_executions SET run_at = %(now)s, claimable_at = %(now)s
WHERE id = %(id)s AND status = 'pending' AND run_at IS NULL
RETURNING id;

-- name: wake_compensating
-- A unit ended: its execution, compensating and waiting for its group's last running
-- units to end (see _saga), looks again now.
UPDATE durable_executions SET run_at = %(now)s, claimable_at = %(now)s
WHERE id = %(id)s AND phase = 'compensate' AND status = 'pending' AND run_at > %(now)s;

-- name: schedules_advance
-- Many "allow" fires at once (see schedule_advance): %(fires)s is a JSON array of
-- [name, expected next tick, next tick, missed, last tick, last execution id]; returns
-- the names that applied.
UPDATE durable_schedules AS s SET
    next_tick = (f.v ->> 2)::timestamptz, missed = s.missed + (f.v ->> 3)::bigint,
    updated_at = %(now)s,
    last_tick = coalesce((f.v ->> 4)::timestamptz, s.last_tick),
    last_execution_id = coalesce(f.v ->> 5, s.last_execution_id)
FROM json_array_elements(%(fires)s::json) AS f(v)
WHERE s.name = f.v ->> 0 AND s.next_tick = (f.v ->> 1)::timestamptz AND NOT s.paused
RETURNING s.name;

-- name: schedule_runs_insert
-- The executions of many fires in one statement: %(rows)s is a JSON array of [id,
-- workflow, queue, priority, input (JSON text), scheduled_at, timeout_ms, step_name,
-- max_attempts, origin (JSON text), shape (JSON text), headers (JSON text)], each
-- pending and due at its tick.
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, claimable_at, timeout_ms, step_index, step_name, attempt, token,
    cancel_requested, max_attempts, origin, shape, headers
)
SELECT
    r.v ->> 0, r.v ->> 1, 'pending', r.v ->> 2, (r.v ->> 3)::int, r.v ->> 4, '{}', %(now)s,
    (r.v ->> 5)::timestamptz, (r.v ->> 5)::timestamptz, (r.v ->> 5)::timestamptz,
    (r.v ->> 6)::bigint, 0, r.v ->> 7, 0, 0, FALSE, (r.v ->> 8)::int, r.v ->> 9, r.v ->> 10,
    r.v ->> 11
FROM json_array_elements(%(rows)s::json) WITH ORDINALITY AS r(v, n)
ORDER BY r.n;

-- name: schedule_latest_by_id
-- A schedule's latest execution, read again by id (see _fire).
SELECT id, status, phase FROM durable_executions WHERE id = %(id)s
FOR UPDATE;

-- name: plan_note
-- This process runs this plan of the workflow now (as a worker, or only starting
-- executions); its row's last_seen never moves back. Rows no process renewed for a day
-- are dropped on the way.
INSERT INTO durable_plans (workflow, plan, process, worker, last_seen_at)
VALUES (%(workflow)s, %(plan)s, %(process)s, %(worker)s, %(now)s)
ON CONFLICT (workflow, plan, process) DO UPDATE
SET last_seen_at = GREATEST(durable_plans.last_seen_at, EXCLUDED.last_seen_at),
    worker = durable_plans.worker OR EXCLUDED.worker;
DELETE FROM durable_plans WHERE workflow = %(workflow)s AND last_seen_at < %(stale)s;

-- name: plan_get
-- When a process other than this one last said it runs this plan: a worker, and any.
SELECT max(CASE WHEN worker = TRUE THEN last_seen_at END) AS by_worker,
       max(last_seen_at) AS by_any
FROM durable_plans
WHERE workflow = %(workflow)s AND plan = %(plan)s AND process <> %(besides)s;
