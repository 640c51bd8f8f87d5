package runtime

// The engine's statements: every one the client and the worker send. The
// transitions themselves live in SQL functions (migrations/0002_qflow.sql);
// every parameter is cast so plans do not depend on inferred types, and
// pgx prepares each statement once per connection.
const (
	sqlDefineFlow = `SELECT qflow.define_flow($1::text, $2::text, $3::jsonb, $4::jsonb)`

	// sqlFlowSteps loads a flow version's steps for a worker: what chains
	// need (kind, input, start delay, graph), whether the optimiser tuned
	// it, and limited: a limit across workers holds the step's tasks (its
	// own or the flow's), so only the claim may start them; paced: the
	// step has a rate.
	sqlFlowSteps = `SELECT f.queue_name, f.prioritized, st.slug, st.timeout_ms, st.kind = 'single', st.takes_input,
			st.start_delay_ms > 0, st.deps, st.dependents,
			EXISTS (SELECT 1 FROM qflow.step_tuning tu WHERE tu.flow_id = f.id AND tu.step_idx = st.idx),
			st.gated OR f.concurrency IS NOT NULL, st.rate_n IS NOT NULL
		FROM qflow.flows f JOIN qflow.steps st ON st.flow_id = f.id
		WHERE f.id = $1::integer ORDER BY st.idx`

	// sqlTuneSteps applies an optimisation level's learned attempts and
	// priorities to a flow version (qflow.tune_steps in
	// migrations/0004_stats.sql).
	sqlTuneSteps = `SELECT qflow.tune_steps($1::integer, $2::smallint, $3::text[], $4::integer[], $5::integer[], $6::bigint[], $7::bigint[])`

	sqlStartRunsBySlug = `SELECT qflow.start_runs(f.id, $2::jsonb[], $3::jsonb)
		FROM (SELECT id FROM qflow.flows WHERE slug = $1::text ORDER BY version DESC LIMIT 1) f`

	sqlStartRunsByID = `SELECT qflow.start_runs($1::integer, $2::jsonb[], $3::jsonb)`

	// sqlStartRunsClaim… start runs and claim their first tasks for a
	// worker in this process (see local.go).
	sqlStartRunsClaimBySlug = `SELECT s.o_ids, s.o_seq, s.o_run, s.o_step, s.o_task, s.o_attempt, s.o_input::text[], s.o_priority, s.o_trace::text[], s.o_existing, s.o_deadline, s.o_sequential
		FROM (SELECT id FROM qflow.flows WHERE slug = $1::text ORDER BY version DESC LIMIT 1) f,
		     qflow.start_runs_claim(f.id, $2::jsonb[], $3::jsonb, $4::uuid, $5::integer, $6::integer, $7::bigint, $8::boolean) s`

	sqlStartRunsClaimByID = `SELECT s.o_ids, s.o_seq, s.o_run, s.o_step, s.o_task, s.o_attempt, s.o_input::text[], s.o_priority, s.o_trace::text[], s.o_existing, s.o_deadline, s.o_sequential
		FROM qflow.start_runs_claim($1::integer, $2::jsonb[], $3::jsonb, $4::uuid, $5::integer, $6::integer, $7::bigint, $8::boolean) s`

	// sqlStartKeyed… start runs with idempotency keys (start_runs_claim
	// claiming nothing) and say which ids are of runs that existed.
	sqlStartKeyedBySlug = `SELECT s.o_ids, s.o_existing
		FROM (SELECT id FROM qflow.flows WHERE slug = $1::text ORDER BY version DESC LIMIT 1) f,
		     qflow.start_runs_claim(f.id, $2::jsonb[], $3::jsonb, NULL::uuid, NULL::integer, 0, 0, false) s`

	sqlStartKeyedByID = `SELECT s.o_ids, s.o_existing
		FROM qflow.start_runs_claim($1::integer, $2::jsonb[], $3::jsonb, NULL::uuid, NULL::integer, 0, 0, false) s`

	// sqlLockRunForResume locks a run first (resume_run locks it again in
	// the same transaction) and reads its flow version's definition.
	sqlLockRunForResume = `SELECT r.status, r.flow_slug, f.version, f.shape_hash, f.definition
		FROM qflow.runs r JOIN qflow.flows f ON f.id = r.flow_id
		WHERE r.id = $1::uuid FOR NO KEY UPDATE OF r`

	// sqlOpenSteps lists the slugs of a run's steps that neither completed
	// nor were skipped (a resume keeps both).
	sqlOpenSteps = `SELECT coalesce(array_agg(st.slug ORDER BY st.idx), '{}')
		FROM qflow.runs r JOIN qflow.steps st ON st.flow_id = r.flow_id
		LEFT JOIN qflow.step_states ss ON ss.run_id = r.id AND ss.step_idx = st.idx
		WHERE r.id = $1::uuid AND coalesce(ss.status, '') NOT IN ('completed', 'skipped')`

	sqlResumeRun = `SELECT o_steps, o_tasks FROM qflow.resume_run($1::uuid, $2::jsonb)`

	sqlRunResult = `SELECT status, output, error, failed_step FROM qflow.runs WHERE id = $1::uuid`

	// sqlUnserved reports, for a run still going, whether no live worker
	// (not stopped, heartbeat within $2 seconds) serves its flow version.
	sqlUnserved = `SELECT r.flow_slug, f.version,
			r.status = 'started' AND NOT EXISTS (
				SELECT 1 FROM qflow.workers w
				WHERE f.queue_name = ANY (w.queues) AND w.stopped_at IS NULL
				  AND w.heartbeat_at > now() - make_interval(secs => $2::float8))
		FROM qflow.runs r JOIN qflow.flows f ON f.id = r.flow_id WHERE r.id = $1::uuid`

	sqlCancelRun = `SELECT qflow.cancel_run($1::uuid, 'cancelled by request')`

	// sqlRideLockTimeout sets lock_timeout for the rest of the transaction.
	sqlRideLockTimeout = `SELECT set_config('lock_timeout', $1, true)`
	// sqlSettle completes, fails and snoozes a worker's finished tasks and
	// claims its next ones in one round trip (a claim alone passes no
	// results).
	sqlSettle = `SELECT seq, run_id, step_idx, task_index, attempt, input, priority, trace_context, deadline, sequential
		FROM qflow.settle($1::uuid, $2::uuid[], $3::smallint[], $4::integer[], $5::jsonb[],
		                  $6::uuid[], $7::smallint[], $8::integer[], $9::text[], $10::boolean[], $11::bigint[],
		                  $12::uuid[], $13::smallint[], $14::integer[], $15::jsonb[], $16::text[], $17::boolean[], $18::bigint[],
		                  $19::integer, $20::integer, $21::bigint)`

	// sqlHeldBy finds a chain's promoted task (task 0 of a step) started by
	// this worker, when the promotion's settle failed after the server may
	// have committed it.
	sqlHeldBy = `SELECT seq FROM qflow.step_tasks
		WHERE run_id = $1::uuid AND step_idx = $2::smallint AND task_index = 0
		  AND status = 'started' AND worker_id = $3::uuid`

	sqlHeartbeat = `SELECT run_id, step_idx, task_index FROM qflow.heartbeat($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) AS x(r, s, t)),
		$5::bigint)`

	sqlRelease = `SELECT qflow.release_tasks($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) AS x(r, s, t)))`

	// sqlPrune deletes one batch of finished runs with their steps and tasks.
	sqlPrune = `WITH old AS (
			SELECT r.id FROM qflow.runs r
			WHERE r.status <> 'started' AND r.status = ANY ($1::text[])
			  AND r.finished_at < now() - make_interval(secs => $2::bigint / 1000.0)
			ORDER BY r.finished_at LIMIT $3::integer
			FOR UPDATE SKIP LOCKED
		), t AS (
			DELETE FROM qflow.step_tasks t USING old WHERE t.run_id = old.id RETURNING 1
		), s AS (
			DELETE FROM qflow.step_states s USING old WHERE s.run_id = old.id RETURNING 1
		), st AS (
			DELETE FROM qflow.stats_runs x USING old WHERE x.run_id = old.id RETURNING 1
		), r AS (
			DELETE FROM qflow.runs r USING old WHERE r.id = old.id RETURNING 1
		)
		SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM s), (SELECT count(*) FROM t), (SELECT count(*) FROM st)`

	// sqlPruneGates deletes a batch of idle gates (limits' state).
	sqlPruneGates = `SELECT qflow.prune_gates($1::integer)`

	sqlUpkeep = `SELECT o_runs_expired, o_tasks_failed FROM qflow.upkeep($1::boolean)`

	sqlRegisterWorker = `INSERT INTO qflow.workers (id, queues, hostname, pid) VALUES ($1::uuid, $2::text[], $3::text, $4::integer)`

	sqlStopWorker = `UPDATE qflow.workers SET stopped_at = now() WHERE id = $1::uuid`
)
