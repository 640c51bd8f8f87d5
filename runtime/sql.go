package runtime

// The engine's statements. Transitions live in SQL functions (see
// migrations/0002_qflow.sql); every parameter is cast so plans do not depend
// on inferred types.
const (
	sqlDefineFlow = `SELECT qflow.define_flow($1::text, $2::text, $3::jsonb)`

	sqlStartRunsBySlug = `SELECT qflow.start_runs(f.id, $2::jsonb[], $3::jsonb)
		FROM (SELECT id FROM qflow.flows WHERE slug = $1::text ORDER BY version DESC LIMIT 1) f`

	sqlStartRunsByID = `SELECT qflow.start_runs($1::integer, $2::jsonb[], $3::jsonb)`

	sqlRunResult = `SELECT status, output, error, failed_step FROM qflow.runs WHERE id = $1::uuid`

	sqlClaim = `SELECT msg_id, run_id, step_idx, task_index, attempt, step_slug, timeout_ms, input
		FROM qflow.claim($1::integer, $2::uuid, $3::integer, $4::bigint)`

	sqlComplete = `SELECT qflow.complete_tasks($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) WITH ORDINALITY AS x(r, s, t, o)),
		$5::jsonb[])`

	sqlFail = `SELECT qflow.fail_tasks($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) WITH ORDINALITY AS x(r, s, t, o)),
		$5::text[], $6::boolean[])`

	sqlSettle = `SELECT msg_id, run_id, step_idx, task_index, attempt, step_slug, timeout_ms, input
		FROM qflow.settle($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) WITH ORDINALITY AS x(r, s, t, o)),
		$5::jsonb[],
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($6::uuid[], $7::smallint[], $8::integer[]) WITH ORDINALITY AS x(r, s, t, o)),
		$9::text[], $10::boolean[], $11::integer, $12::integer, $13::bigint)`

	sqlHeartbeat = `SELECT run_id, step_idx, task_index FROM qflow.heartbeat($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) WITH ORDINALITY AS x(r, s, t, o)),
		$5::bigint)`

	sqlRelease = `SELECT qflow.release_tasks($1::uuid,
		(SELECT array_agg((r, s, t)::qflow.task_key ORDER BY o) FROM unnest($2::uuid[], $3::smallint[], $4::integer[]) WITH ORDINALITY AS x(r, s, t, o)))`

	sqlExpireRuns = `SELECT qflow.expire_runs()`

	sqlRegisterWorker = `INSERT INTO qflow.workers (id, queues, hostname, pid) VALUES ($1::uuid, $2::text[], $3::text, $4::integer)`

	sqlStopWorker = `UPDATE qflow.workers SET stopped_at = now() WHERE id = $1::uuid`
)
