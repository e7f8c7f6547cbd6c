-- The SQLite store's statements (see durable/stores/sql/loader.py for the format).
--
-- Parameters are :named. Times are fixed-width ISO text ("0999-01-01 00:00:00.000000"),
-- naive UTC, so text order is time order; every "now" is a parameter from the engine's
-- clock. A list parameter is a JSON array, read with json_each; a filter given as NULL
-- applies no restriction.
--
-- A fenced write matches only while the caller's claim holds (its token, status running)
-- and refuses to apply twice: a retry of a transition whose first try committed finds its
-- own write id on the row, and the store reports it done.
--
-- The hot transitions (complete_next, finish_run, retry, restart) update the row
-- and return its status; the store then runs insert_attempt in the same transaction.


-- name: has_migrations
SELECT count(*) AS present FROM sqlite_master
WHERE type = 'table' AND name = 'durable_migrations';

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM durable_migrations;

-- name: server_time
-- (none: SQLite has no clock of its own to compare the workers' with)

-- name: notify
-- (none: workers on one SQLite file find new work by polling)

-- name: listen
-- (none, as for notify)

-- name: notify_done
-- (none: whoever waits for an end on SQLite looks again now and then)

-- name: notify_cancel
-- (none: workers look for cancels of what they run at each heartbeat)

-- name: cancel_requested_among
-- Which of these executions (or units) have a cancel requested.
SELECT id FROM durable_executions
WHERE id IN (SELECT value FROM json_each(:ids)) AND cancel_requested;


-- name: create
-- A new execution; nothing (and no error) when its idempotency key is taken.
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, step_index, step_name, attempt, token,
    cancel_requested, claimable_at, max_attempts, parent_id, origin, shape, headers, parent_step
) VALUES (
    :id, :workflow, :status, :queue, :priority, :input, :context, :created_at, :scheduled_at,
    :run_at, :timeout_ms, :idempotency_key, :step_index, :step_name, :attempt, :token,
    0, :claimable_at, :max_attempts, :parent_id, :origin, :shape, :headers, :parent_step
)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;

-- name: by_key
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE idempotency_key = :key;

-- name: get
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE id = :id;

-- name: get_for_update
-- (the write transaction began IMMEDIATE: it already holds the write lock)
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions WHERE id = :id;

-- name: live
-- An execution's state, its row locked (PostgreSQL) for an event, an input, or a unit's
-- wait on its events.
SELECT status, step_name, step_visit, parent_id, unit FROM durable_executions WHERE id = :id;

-- name: steps
SELECT
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
FROM durable_step_attempts
WHERE execution_id = :id
   OR execution_id IN (
       SELECT id FROM durable_executions WHERE parent_id = :id AND unit IS NOT NULL
   )
ORDER BY seq;

-- name: own_steps
-- As steps, without its units' attempts.
SELECT
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
FROM durable_step_attempts
WHERE execution_id = :id
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
WHERE (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

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
WHERE status = :status AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

-- name: list_by_statuses
-- As list, for several statuses: each from the status index, then sorted.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE status IN (SELECT value FROM json_each(:statuses))
  AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

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
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

-- name: list_by_workflow
-- As list, for exactly one workflow: walks that workflow in its index, in order.
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE workflow = :workflow
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

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
WHERE workflow = :workflow AND status = :status
  AND (phase = 'run' OR completed_at IS NOT NULL)
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

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
WHERE queue = :queue
  AND unit IS NULL
  AND (:parent IS NULL OR parent_id = :parent)
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

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
WHERE parent_id = :parent AND unit IS NULL
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses))
       AND (phase = 'run' OR completed_at IS NOT NULL))
  AND (created_at, seq) < (:before_at, :before_seq)
ORDER BY created_at DESC, seq DESC
LIMIT :limit;

-- name: next_due
SELECT min(claimable_at) AS due FROM durable_executions
WHERE claimable_at IS NOT NULL
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
HAVING min(claimable_at) IS NOT NULL;


-- name: claim
-- Two statements: pick the due rows, best first, noting whether each starts a fresh
-- attempt and since when it is due (RETURNING only sees the updated row); then take the
-- picked rows (:seqs).
SELECT seq, attempt_started_at IS NULL AS fresh, claimable_at AS due FROM durable_executions
WHERE claimable_at <= :now AND status IN ('pending', 'running', 'waiting')
  AND workflow IN (SELECT value FROM json_each(:workflows))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
ORDER BY priority DESC, scheduled_at, created_at, seq
LIMIT :limit;
UPDATE durable_executions SET
    status = 'running', token = token + 1, worker_id = :worker,
    lease_expires_at = :expires, claimable_at = :expires, run_at = NULL,
    started_at = coalesce(started_at, :now),
    attempt = CASE WHEN attempt_started_at IS NULL AND NOT suspended THEN attempt + 1
              ELSE attempt END,
    attempt_started_at = coalesce(attempt_started_at, :now)
WHERE seq IN (SELECT value FROM json_each(:seqs))
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;

-- name: set_deadline
UPDATE durable_executions SET deadline = :deadline WHERE seq = :seq;

-- name: heartbeat
UPDATE durable_executions SET lease_expires_at = :expires, claimable_at = :expires
WHERE id = :id AND token = :token AND status = 'running'
RETURNING id;

-- name: insert_attempt
INSERT INTO durable_step_attempts (
    execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs,
    max_attempts, retry_at, result, visit, phase, compensates, changes
) VALUES (
    :a_execution_id, :a_step_index, :a_name, :a_attempt, :a_status, :a_started_at,
    :a_completed_at, :a_error, :a_logs, :a_max_attempts, :a_retry_at, :a_result, :a_visit, :a_phase, :a_compensates, :a_changes
);

-- name: complete_next
UPDATE durable_executions SET
    context = :context, step_index = :next_index, step_name = :next_name,
    attempt = :next_attempt, suspended = FALSE, lost_attempts = 0,
    max_attempts = :next_max, last_write = :write_id, attempt_started_at = :next_started,
    step_visit = :next_visit, visits = coalesce(:visits, visits)
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id AND NOT cancel_requested
RETURNING status;

-- name: finish_run
-- The execution (or unit) ends with :status: completed (its context and result kept) or
-- failed out of attempts (its error kept).
UPDATE durable_executions SET
    context = coalesce(:context, context), status = :status, completed_at = :now,
    result = :result, error = :error, last_write = :write_id,
    run_at = NULL, lease_expires_at = NULL, worker_id = NULL, attempt_started_at = NULL,
    claimable_at = NULL, suspended = FALSE
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id AND NOT cancel_requested
RETURNING status;

-- name: finish_alone
-- (SQLite runs a run's end as finish_run and what it tells others in one transaction.)

-- name: retry
UPDATE durable_executions SET
    status = 'pending', run_at = :retry_at, claimable_at = :retry_at,
    lease_expires_at = NULL, worker_id = NULL, suspended = FALSE,
    max_attempts = :a_max_attempts, last_write = :write_id, attempt_started_at = NULL
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id AND NOT cancel_requested
RETURNING status;

-- name: restart
UPDATE durable_executions SET
    attempt_started_at = :now, lost_attempts = lost_attempts + 1, last_write = :write_id
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id
RETURNING status;

-- name: end
UPDATE durable_executions SET
    status = :status, completed_at = :now, error = :error, last_write = :write_id,
    run_at = NULL, lease_expires_at = NULL, worker_id = NULL, attempt_started_at = NULL,
    claimable_at = NULL, suspended = FALSE
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id
RETURNING status;

-- name: release
UPDATE durable_executions SET
    status = 'pending', run_at = :run_at, claimable_at = :run_at, lease_expires_at = NULL,
    worker_id = NULL,
    attempt = CASE WHEN :ran OR attempt_started_at IS NULL OR suspended THEN attempt
              ELSE attempt - 1 END,
    last_write = :write_id,
    attempt_started_at = CASE WHEN :ran THEN attempt_started_at ELSE NULL END
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id
RETURNING status;

-- name: suspend
UPDATE durable_executions SET
    status = :status, run_at = :wake, claimable_at = :wake, lease_expires_at = NULL,
    worker_id = NULL, attempt_started_at = NULL, suspended = TRUE, last_write = :write_id,
    lost_attempts = 0
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id AND NOT cancel_requested
RETURNING status, deadline;

-- name: wake
UPDATE durable_executions SET status = 'pending', run_at = :now, claimable_at = :now
WHERE id = :id AND status = 'waiting';

-- name: retry_execution
-- An execution that ended failed, cancelled or compensated goes back to pending at a step
-- (engine.retry): its flow again, a new visit of that step, the context rebuilt as it
-- was before it, a fresh workflow timeout from its next claim.
UPDATE durable_executions SET
    status = 'pending', phase = 'run', run_at = :now, claimable_at = :now,
    completed_at = NULL, error = NULL, result = NULL, cancel_requested = 0,
    cancel_reason = NULL, lease_expires_at = NULL, worker_id = NULL, attempt = 0,
    attempt_started_at = NULL, suspended = 0, lost_attempts = 0, open_units = 0,
    deadline = NULL, max_attempts = :max_attempts, step_index = :step_index,
    step_name = :step_name, step_visit = :visit, visits = :visits,
    context = :context, origin = coalesce(:origin, origin)
WHERE id = :id AND unit IS NULL AND status IN ('failed', 'cancelled', 'compensated')
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
    phase = 'compensate', status = 'pending', run_at = :now, claimable_at = :now,
    lease_expires_at = NULL, worker_id = NULL, attempt = 0, attempt_started_at = NULL,
    suspended = 0, lost_attempts = 0, max_attempts = 1, cancel_requested = 0,
    open_units = 0, error = :error, last_write = :write_id
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id
RETURNING status;

-- name: cancel_compensate
-- A cancel of an execution nothing runs now, whose workflow compensates: it enters its
-- compensate phase at once (as compensate does), the cancel's reason kept.
UPDATE durable_executions SET
    phase = 'compensate', status = 'pending', run_at = :now, claimable_at = :now,
    lease_expires_at = NULL, worker_id = NULL, attempt = 0, attempt_started_at = NULL,
    suspended = 0, lost_attempts = 0, max_attempts = 1, cancel_requested = 0,
    open_units = 0, error = :error, cancel_reason = :reason
WHERE id = :id
RETURNING
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step;

-- name: cancel
-- Mark the cancel; with :at_once (nothing runs it now) end the execution as well. With
-- mark (a running execution whose workflow compensates) mark its phase compensate: its
-- next checkpoint starts its compensations instead of ending it.
UPDATE durable_executions SET
    cancel_requested = 1, cancel_reason = :reason,
    phase = CASE WHEN :mark THEN 'compensate' ELSE phase END,
    status = CASE WHEN :at_once THEN 'cancelled' ELSE status END,
    completed_at = CASE WHEN :at_once THEN :now ELSE completed_at END,
    run_at = CASE WHEN :at_once THEN NULL ELSE run_at END,
    lease_expires_at = CASE WHEN :at_once THEN NULL ELSE lease_expires_at END,
    worker_id = CASE WHEN :at_once THEN NULL ELSE worker_id END,
    attempt_started_at = CASE WHEN :at_once THEN NULL ELSE attempt_started_at END,
    claimable_at = CASE WHEN :at_once THEN NULL ELSE claimable_at END,
    suspended = CASE WHEN :at_once THEN FALSE ELSE suspended END
WHERE id = :id
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
FROM durable_waits WHERE execution_id = :id AND step = :step AND visit = :visit
  AND wait_seq = :wseq;

-- name: wait_insert
INSERT INTO durable_waits (
    execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status, created_at,
    prompt, input_schema, visit, parent_id
) VALUES (
    :id, :step, :wseq, :attempt, :kind, :names, :mode, :until, 'pending', :now,
    :prompt, :schema, :visit, :parent
)
RETURNING
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit;

-- name: wait_renew
UPDATE durable_waits SET
    attempt = :attempt, kind = :kind, names = :names, mode = :mode, until_at = :until,
    status = 'pending', created_at = :now, prompt = :prompt, input_schema = :schema,
    result = NULL, resolved_at = NULL
WHERE seq = :wid
RETURNING
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit;

-- name: wait_set
UPDATE durable_waits SET status = :status, result = :result, resolved_at = :now
WHERE seq = :wid AND status = 'pending';

-- name: wait_suspended_on
SELECT
    seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit
FROM durable_waits
WHERE execution_id = :id AND step = :step AND visit = :visit
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
  AND (:workflow IS NULL OR e.workflow = :workflow)
  AND (:open_at IS NULL OR w.until_at IS NULL OR w.until_at >= :open_at)
  AND (:kind IS NULL OR w.kind = :kind)
ORDER BY w.created_at, w.seq
LIMIT :limit;

-- name: waits_all
-- Every wait, oldest first, by any filters (one execution's: waits_of).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE (:workflow IS NULL OR e.workflow = :workflow)
  AND (:open_at IS NULL OR w.until_at IS NULL OR w.until_at >= :open_at)
  AND (:kind IS NULL OR w.kind = :kind)
ORDER BY w.created_at, w.seq
LIMIT :limit;

-- name: waits_of
-- As waits_pending (pending_only) or waits_all, for one execution: its own waits and its
-- units' (by the parent_id of their waits, v15), two index lookups however many units.
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE (w.execution_id = :execution_id OR w.parent_id = :execution_id)
  AND (NOT :pending_only OR w.status = 'pending'
       AND e.status IN ('pending', 'running', 'waiting', 'compensating'))
  AND (:workflow IS NULL OR e.workflow = :workflow)
  AND (:open_at IS NULL OR w.until_at IS NULL OR w.until_at >= :open_at)
  AND (:kind IS NULL OR w.kind = :kind)
ORDER BY w.created_at, w.seq
LIMIT :limit;

-- name: waits_recent
-- The newest waits of one execution (its units' too), whatever their status, newest
-- first, at most :limit; each row carries how many it has in all (total).
SELECT
    w.seq, w.execution_id, w.step, w.wait_seq, w.attempt, w.kind, w.names, w.mode,
    w.until_at, w.status, w.created_at, w.prompt, w.input_schema, w.result, w.resolved_at,
    w.visit, e.workflow,
    (SELECT count(*) FROM durable_waits x
     WHERE x.execution_id = :execution_id OR x.parent_id = :execution_id) AS total
FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id
WHERE w.execution_id = :execution_id OR w.parent_id = :execution_id
ORDER BY w.created_at DESC, w.seq DESC
LIMIT :limit;

-- name: inbox
-- The unconsumed events of an execution with one of :names (a JSON array), in order.
SELECT seq, name, payload, sent_at FROM durable_events
WHERE execution_id = :id AND consumed_at IS NULL
  AND name IN (SELECT value FROM json_each(:names))
ORDER BY seq;

-- name: consume
UPDATE durable_events SET consumed_at = :now
WHERE seq IN (SELECT value FROM json_each(:seqs));

-- name: event_insert
INSERT INTO durable_events (execution_id, name, payload, sent_at)
VALUES (:id, :name, :payload, :now);


-- name: purge_pick
-- Finished executions, oldest first. INDEXED BY: without ANALYZE statistics SQLite would
-- take the status index and sort every finished execution, under the write lock, for
-- each batch.
SELECT id FROM durable_executions INDEXED BY durable_executions_finished
WHERE unit IS NULL AND completed_at < :before
  AND status IN ('completed', 'failed', 'cancelled', 'compensated')
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
ORDER BY completed_at, seq
LIMIT :limit;

-- name: purge
-- Delete the picked executions (:ids) and what they own; the last returns what it deleted.
DELETE FROM durable_events WHERE execution_id IN (SELECT value FROM json_each(:ids));
DELETE FROM durable_waits WHERE execution_id IN (SELECT value FROM json_each(:ids));
DELETE FROM durable_step_attempts WHERE execution_id IN (SELECT value FROM json_each(:ids));
DELETE FROM durable_group_counts WHERE parent_id IN (SELECT value FROM json_each(:ids));
DELETE FROM durable_executions WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING id;


-- Units (parallel branches, foreach items) and child workflows -------------------------

-- name: unit_insert
-- Every unit of a fork in one statement. :units is a JSON array with one array per unit,
-- in order: [id, name, index, max_attempts, context (JSON text, null: {}), item (JSON
-- text)]; units below index :concurrency (all when NULL) are claimable at once, the
-- others parked (pending, not claimable). A fork of many units runs it once per batch.
-- A unit's id is derived from its place, so a repeated fork adds nothing. Units share
-- their execution's headers. (WHERE TRUE: an upsert after a SELECT needs one.)
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, claimable_at, deadline, step_index, step_name, attempt, token, cancel_requested,
    max_attempts, parent_id, unit, group_step, group_visit, unit_index, stops_group, item,
    step_visit, headers
)
SELECT
    u.value ->> 0, :workflow, 'pending', :queue, :priority, 'null',
    coalesce(u.value ->> 4, '{}'), :now, :scheduled_at,
    CASE WHEN :concurrency IS NULL OR u.value ->> 2 < :concurrency THEN :now END,
    CASE WHEN :concurrency IS NULL OR u.value ->> 2 < :concurrency THEN :now END,
    :deadline, 0, u.value ->> 1, 0, 0, 0, u.value ->> 3, :parent, u.value ->> 1, :step,
    :visit, u.value ->> 2, :stops, u.value ->> 5, :visit, :headers
FROM json_each(:units) AS u
WHERE TRUE
ORDER BY u.key
ON CONFLICT (id) DO NOTHING;

-- name: fork_wait
-- The execution waits for its units (or, with none, is pending at once).
UPDATE durable_executions SET
    status = :status, run_at = :wake, claimable_at = :wake, lease_expires_at = NULL,
    worker_id = NULL, attempt_started_at = NULL, suspended = 1, lost_attempts = 0,
    open_units = :open, last_write = :write_id
WHERE id = :id AND token = :token AND status = 'running'
  AND coalesce(last_write, '') <> :write_id AND NOT cancel_requested
RETURNING status;

-- name: units
SELECT
    seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index,
    step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at,
    cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts, step_visit, visits,
    parent_id, unit, group_step, group_visit, unit_index, stops_group, item, result, open_units, phase, origin, shape, headers, parent_step
FROM durable_executions
WHERE parent_id = :id AND group_step = :step AND group_visit = :visit
  AND unit IS NOT NULL
ORDER BY unit_index;

-- name: unit_outcomes
-- How each unit of a group run ended, by index, a page at a time (the units after index
-- :after, at most :limit of them; NULL: all): what its join reads.
SELECT unit_index, unit, status, created_at, completed_at, result, error
FROM durable_executions
WHERE parent_id = :id AND group_step = :step AND group_visit = :visit
  AND unit IS NOT NULL AND unit_index > :after
ORDER BY unit_index
LIMIT coalesce(:limit, -1);

-- name: unit_states
-- How many units of a group run stand each way: by status, whether an attempt began,
-- and whether it is suspended on a wait (the store names each way: base.unit_state).
SELECT status, attempt > 0 AS began, suspended, count(*) AS n
FROM durable_executions
WHERE parent_id = :id AND group_step = :step AND group_visit = :visit
  AND unit IS NOT NULL
GROUP BY status, attempt > 0, suspended;

-- name: ended_row
-- After a transition ended a row: what its parent needs to hear.
SELECT id, status, parent_id, unit, group_step, group_visit, unit_index, stops_group,
    context, error, origin
FROM durable_executions WHERE id = :id;

-- name: group_counts_insert
-- A group run's count of open units, in the rows :counts gives: a JSON array of
-- [shard, open units]. Repeated, it adds nothing. (WHERE TRUE: an upsert after a SELECT
-- needs one.)
INSERT INTO durable_group_counts (parent_id, group_step, group_visit, shard, open_units)
SELECT :parent, :step, :visit, c.value ->> 0, c.value ->> 1
FROM json_each(:counts) AS c
WHERE TRUE
ON CONFLICT DO NOTHING;

-- name: shard_count_down
-- A unit ended: its row of the group's count goes down (what is left comes back).
UPDATE durable_group_counts SET open_units = open_units - 1
WHERE parent_id = :parent AND group_step = :step AND group_visit = :visit
  AND shard = :shard
RETURNING open_units;

-- name: group_count_down
-- The end that emptied a count row (:emptied 1), or a stopping failure: one fewer open
-- row; none left, or the failure, lets the execution run again. Only while it waits at
-- that group run.
UPDATE durable_executions SET
    open_units = open_units - :emptied,
    status = CASE WHEN open_units - :emptied <= 0 OR :stop THEN 'pending' ELSE status END,
    run_at = CASE WHEN open_units - :emptied <= 0 OR :stop THEN :now ELSE run_at END,
    claimable_at = CASE WHEN open_units - :emptied <= 0 OR :stop THEN :now
                        ELSE claimable_at END
WHERE id = :parent AND status = 'waiting' AND step_name = :step AND step_visit = :visit
RETURNING status;

-- name: group_activate
-- Let the group's lowest parked unit be claimed, while the execution waits at that group
-- run.
UPDATE durable_executions SET run_at = :now, claimable_at = :now
WHERE seq = (
    SELECT seq FROM durable_executions
    WHERE parent_id = :parent AND group_step = :step AND group_visit = :visit
      AND unit IS NOT NULL AND status = 'pending' AND claimable_at IS NULL
      AND EXISTS (
          SELECT 1 FROM durable_executions AS w
          WHERE w.id = :parent AND w.status = 'waiting' AND w.step_name = :step
            AND w.step_visit = :visit
      )
    ORDER BY unit_index
    LIMIT 1
)
RETURNING seq;

-- name: group_parked
-- (SQLite's one writer at a time never finds a parked unit another holds: group_activate
-- always lets one in when one is parked, so no let-in is ever owed.)

-- name: group_activate_wait
-- (As group_parked: never needed.)

-- name: cancel_units
-- Cancel an execution's unfinished units (of one group run, or all when step is NULL):
-- a running one with a live lease at its next checkpoint, the others at once (no attempt
-- left in flight).
UPDATE durable_executions SET
    cancel_requested = 1, cancel_reason = :reason,
    status = CASE WHEN status = 'running' AND lease_expires_at > :now THEN status
                  ELSE 'cancelled' END,
    completed_at = CASE WHEN status = 'running' AND lease_expires_at > :now THEN completed_at
                        ELSE :now END,
    run_at = CASE WHEN status = 'running' AND lease_expires_at > :now THEN run_at ELSE NULL END,
    claimable_at = CASE WHEN status = 'running' AND lease_expires_at > :now THEN claimable_at
                        ELSE NULL END,
    suspended = CASE WHEN status = 'running' AND lease_expires_at > :now THEN suspended
                     ELSE 0 END,
    attempt_started_at = CASE WHEN status = 'running' AND lease_expires_at > :now
                              THEN attempt_started_at ELSE NULL END
WHERE parent_id = :id AND unit IS NOT NULL
  AND status IN ('pending', 'running', 'waiting')
  AND (:step IS NULL OR (group_step = :step AND group_visit = :visit));

-- name: live_children
-- The children a cancel reaches: unfinished, and not already running their compensations.
SELECT id FROM durable_executions
WHERE parent_id = :id AND unit IS NULL
  AND status IN ('pending', 'running', 'waiting') AND phase = 'run';

-- name: waiting_units
-- An execution's units suspended on a wait, by the time they began waiting.
SELECT id, step_name, step_visit FROM durable_executions
WHERE parent_id = :id AND unit IS NOT NULL AND status = 'waiting'
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
WHERE (e.id = :parent OR (e.parent_id = :parent AND e.unit IS NOT NULL))
  AND w.kind = 'child' AND w.names = :names AND w.status = 'pending'
ORDER BY e.id <> :parent, e.unit_index, w.step, w.visit, w.wait_seq
LIMIT 1;

-- name: units_of
-- The unit rows of the given executions (purged with them).
SELECT id FROM durable_executions
WHERE parent_id IN (SELECT value FROM json_each(:ids)) AND unit IS NOT NULL;

-- name: schedule_put
-- Store a schedule by name; an existing one keeps its next tick unless its cron or time
-- zone changed (then only while its next tick is still :expected: else nothing, and the caller
-- reads it again), and its pause, last tick and execution, buffered execution and count.
-- (WHERE TRUE: an upsert after a SELECT needs it to parse.)
INSERT INTO durable_schedules (
    name, workflow, cron, timezone, input, catch_up, overlap, paused, declared, next_tick,
    last_tick, last_execution_id, buffered_id, missed, created_at, updated_at
) VALUES (
    :name, :workflow, :cron, :timezone, :input, :catch_up, :overlap, :paused, :declared,
    :next_tick, NULL, NULL, NULL, 0, :now, :now
)
ON CONFLICT (name) DO UPDATE SET
    workflow = excluded.workflow, input = excluded.input, catch_up = excluded.catch_up,
    overlap = excluded.overlap, declared = excluded.declared, updated_at = excluded.updated_at,
    next_tick = CASE WHEN durable_schedules.cron = excluded.cron
        AND durable_schedules.timezone = excluded.timezone
        THEN durable_schedules.next_tick ELSE excluded.next_tick END,
    cron = excluded.cron, timezone = excluded.timezone
WHERE (durable_schedules.cron = excluded.cron AND durable_schedules.timezone = excluded.timezone)
   OR durable_schedules.next_tick = :expected
RETURNING *;

-- name: schedule_get
SELECT * FROM durable_schedules WHERE name = :name;

-- name: schedule_list
SELECT * FROM durable_schedules ORDER BY name;

-- name: schedule_delete
DELETE FROM durable_schedules WHERE name = :name RETURNING buffered_id;

-- name: schedule_pause
-- A pause keeps the next tick; a resume applies only to a paused schedule (so it never
-- moves the tick of one that fires meanwhile), from the next tick it was given.
UPDATE durable_schedules SET paused = :paused,
    next_tick = CASE WHEN :paused THEN next_tick ELSE :next_tick END,
    updated_at = :now
WHERE name = :name AND (:paused OR paused)
RETURNING *;

-- name: schedule_next_tick
-- The earliest tick due of the schedules not paused (of those workflows; NULL: all).
SELECT min(next_tick) AS due FROM durable_schedules
WHERE NOT paused
  AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
HAVING min(next_tick) IS NOT NULL;

-- name: schedules_due
SELECT * FROM durable_schedules
WHERE next_tick <= :now AND NOT paused
  AND workflow IN (SELECT value FROM json_each(:workflows))
ORDER BY next_tick, name
LIMIT :limit;

-- name: schedule_latest
-- The schedule's latest execution (SQLite writes one transaction at a time: no lock).
SELECT e.id, e.status, e.phase FROM durable_schedules AS s
JOIN durable_executions AS e ON e.id = s.last_execution_id
WHERE s.name = :name;

-- name: schedule_advance
-- A fire applies only while next_tick is the one the worker read: one worker per tick.
-- (An "allow" fire sets its last tick and execution here: it makes every row.)
UPDATE durable_schedules SET next_tick = :next_tick, missed = missed + :missed,
    updated_at = :now, last_tick = coalesce(:last_tick, last_tick),
    last_execution_id = coalesce(:last_execution_id, last_execution_id)
WHERE name = :name AND next_tick = :expected AND NOT paused
RETURNING *;

-- name: schedule_fired
UPDATE durable_schedules SET last_tick = :last_tick,
    last_execution_id = :last_execution_id, buffered_id = :buffered_id, missed = :missed
WHERE name = :name;

-- name: schedule_release
-- The schedule's latest execution ended: its buffered one (if any) becomes the latest.
UPDATE durable_schedules SET last_execution_id = buffered_id, buffered_id = NULL
WHERE name = :name AND last_execution_id = :id AND buffered_id IS NOT NULL
RETURNING last_execution_id AS buffered_id;

-- name: release_buffered
-- ... and is due now, unless it was cancelled meanwhile.
UPDATE durable_executions SET run_at = :now, claimable_at = :now
WHERE id = :id AND status = 'pending' AND run_at IS NULL
RETURNING id;

-- name: wake_compensating
-- A unit ended: its execution, compensating and waiting for its group's last running
-- units to end (see _saga), looks again now.
UPDATE durable_executions SET run_at = :now, claimable_at = :now
WHERE id = :id AND phase = 'compensate' AND status = 'pending' AND run_at > :now;

-- name: schedules_advance
-- Many "allow" fires at once (see schedule_advance): :fires is a JSON array of [name,
-- expected next tick, next tick, missed, last tick, last execution id]; returns the
-- names that applied.
UPDATE durable_schedules SET
    next_tick = (SELECT f.value ->> 2 FROM json_each(:fires) AS f
                 WHERE f.value ->> 0 = durable_schedules.name),
    missed = missed + (SELECT f.value ->> 3 FROM json_each(:fires) AS f
                       WHERE f.value ->> 0 = durable_schedules.name),
    updated_at = :now,
    last_tick = coalesce((SELECT f.value ->> 4 FROM json_each(:fires) AS f
                          WHERE f.value ->> 0 = durable_schedules.name), last_tick),
    last_execution_id = coalesce((SELECT f.value ->> 5 FROM json_each(:fires) AS f
                                  WHERE f.value ->> 0 = durable_schedules.name),
                                 last_execution_id)
WHERE NOT paused AND EXISTS (
    SELECT 1 FROM json_each(:fires) AS f
    WHERE f.value ->> 0 = durable_schedules.name AND f.value ->> 1 = durable_schedules.next_tick
)
RETURNING name;

-- name: schedule_runs_insert
-- The executions of many fires in one statement: :rows is a JSON array of [id, workflow,
-- queue, priority, input (JSON text), scheduled_at, timeout_ms, step_name, max_attempts,
-- origin (JSON text), shape (JSON text), headers (JSON text)], each pending and due at
-- its tick.
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, claimable_at, timeout_ms, step_index, step_name, attempt, token,
    cancel_requested, max_attempts, origin, shape, headers
)
SELECT
    r.value ->> 0, r.value ->> 1, 'pending', r.value ->> 2, r.value ->> 3, r.value ->> 4,
    '{}', :now, r.value ->> 5, r.value ->> 5, r.value ->> 5, r.value ->> 6, 0,
    r.value ->> 7, 0, 0, 0, r.value ->> 8, r.value ->> 9, r.value ->> 10, r.value ->> 11
FROM json_each(:rows) AS r
ORDER BY r.key;

-- name: schedule_latest_by_id
-- A schedule's latest execution, read again by id (see _fire).
SELECT id, status, phase FROM durable_executions WHERE id = :id;

-- name: plan_note
-- This process runs this plan of the workflow now (as a worker, or only starting
-- executions); its row's last_seen never moves back. Rows no process renewed for a day
-- are dropped on the way.
INSERT INTO durable_plans (workflow, plan, process, worker, last_seen_at)
VALUES (:workflow, :plan, :process, :worker, :now)
ON CONFLICT (workflow, plan, process) DO UPDATE
SET last_seen_at = MAX(durable_plans.last_seen_at, excluded.last_seen_at),
    worker = durable_plans.worker OR excluded.worker;
DELETE FROM durable_plans WHERE workflow = :workflow AND last_seen_at < :stale;

-- name: plan_get
-- When a process other than this one last said it runs this plan: a worker, and any.
SELECT max(CASE WHEN worker = 1 THEN last_seen_at END) AS by_worker,
       max(last_seen_at) AS by_any
FROM durable_plans
WHERE workflow = :workflow AND plan = :plan AND process <> :besides;
