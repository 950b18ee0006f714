-- A re-run's result is the attempt that re-ran it: the job's next attempt ON THE SAME COMMIT.
--
-- 003 took the job's next attempt whatever its commit, so when the guard's re-run never ran (dry run, a
-- refused or failed command, the demo, which has no CI) the next push to the branch, hours later and
-- with other code, decided the re-run: its success counted as the guard's recovery and as time saved.
-- A re-run always runs the same commit; a push brings another. When either commit is unknown the next
-- attempt stands in, as before.
--
-- job_attempts gains retry_conclusion / retry_done_at / retry_cost_usd: the job's next attempt on the
-- same commit (the next attempt when the commit is unknown). command_results decides a re-run by it, and
-- retries_avoided asks it whether a re-run would have helped. Everything else is as in 003 (the views
-- that read these, costs and roi_daily_repo, read them by name and follow).

CREATE OR REPLACE VIEW {db}.job_attempts AS
SELECT
    id, job_key, provider, owner, repo, job_id, job_name, workflow, branch, run_id, attempt, conclusion,
    head_sha, runner_size, duration_minutes, cost_usd, ts,
    done_at,
    job_identity,
    conclusion IN ('failure', 'timed_out') AS failed,
    leadInFrame(toNullable(conclusion)) OVER w AS next_conclusion,
    leadInFrame(toNullable(done_at)) OVER w AS next_done_at,
    leadInFrame(toNullable(cost_usd)) OVER w AS next_cost_usd,
    leadInFrame(head_sha) OVER w AS next_head_sha,
    sum(toUInt64(conclusion = 'success')) OVER (
        PARTITION BY job_identity ORDER BY done_at, attempt, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS greens_before,
    if(ifNull(head_sha, '') = '', next_conclusion, leadInFrame(toNullable(conclusion)) OVER c) AS retry_conclusion,
    if(ifNull(head_sha, '') = '', next_done_at, leadInFrame(toNullable(done_at)) OVER c) AS retry_done_at,
    if(ifNull(head_sha, '') = '', next_cost_usd, leadInFrame(toNullable(cost_usd)) OVER c) AS retry_cost_usd
FROM
(
    SELECT *,
           coalesce(completed_at, ts) AS done_at,
           cityHash64(provider, owner, repo, ifNull(workflow, ''), job_name, ifNull(branch, '')) AS job_identity
    FROM {db}.job_runs FINAL
    WHERE conclusion IN ('success', 'failure', 'timed_out')
)
WINDOW w AS (PARTITION BY job_identity ORDER BY done_at, attempt, id
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
       c AS (PARTITION BY job_identity, ifNull(head_sha, '') ORDER BY done_at, attempt, id
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);

-- command_results: as in 003, but a rerun command is "decided" once its re-run (retry_*) has completed
-- and "recovered" when that attempt succeeded; rerun_cost_usd is the re-run's CI cost, or the planner's
-- estimate while it has not run.

CREATE OR REPLACE VIEW {db}.command_results AS
SELECT
    c.id AS command_id, c.ts AS ts, c.provider AS provider, c.owner AS owner, c.repo AS repo,
    c.job_key AS job_key, c.job_id AS job_id, c.attempt AS attempt, c.action AS action, c.category AS category,
    c.confidence AS confidence, c.estimated_cost_usd AS estimated_cost_usd,
    c.action IN ('retry', 'retry_backoff', 'retry_tests_isolated', 'rerun_sequential', 'rerun_more_memory',
                      'rerun_larger_runner', 'clear_cache_retry', 'rebuild_no_layer_cache', 'cleanup_retry',
                      'rerun_clean_dependencies') AS rerun,
    a.done_at AS failed_at,
    rerun AND a.retry_conclusion IS NOT NULL AS decided,
    rerun AND ifNull(a.retry_conclusion = 'success', 0) AS recovered,
    if(a.done_at IS NULL, NULL, dateDiff('millisecond', a.done_at, c.ts) / 60000.0) AS reaction_minutes,
    if(rerun, ifNull(a.retry_cost_usd, c.estimated_cost_usd), 0) AS rerun_cost_usd,
    o.status AS outcome_status
FROM {db}.commands AS c FINAL
LEFT JOIN (SELECT job_key, attempt, toNullable(done_at) AS done_at, retry_conclusion, retry_cost_usd
           FROM {db}.job_attempts) AS a
    ON a.job_key = c.job_key AND a.attempt = c.attempt
LEFT JOIN (SELECT id, toNullable(status) AS status FROM {db}.outcomes FINAL) AS o ON o.id = c.id
SETTINGS join_use_nulls = 1;

-- retries_avoided: as in 003; "a re-run would have helped" is now "the job's next attempt on the same
-- commit succeeded" (003 looked only at the immediately next attempt, which a push can come before).

CREATE OR REPLACE VIEW {db}.retries_avoided AS
SELECT a.job_key AS job_key, a.attempt AS attempt, a.provider AS provider, a.owner AS owner, a.repo AS repo,
       a.done_at AS done_at, a.cost_usd AS cost_usd, d.category AS category
FROM {db}.job_attempts AS a
INNER JOIN (SELECT job_key, attempt, any(category) AS category FROM {db}.diagnoses FINAL
            GROUP BY job_key, attempt) AS d
    ON d.job_key = a.job_key AND d.attempt = a.attempt
WHERE a.failed
  AND (a.job_key, a.attempt) NOT IN (SELECT job_key, attempt FROM {db}.command_results WHERE rerun)
  AND NOT (ifNull(a.retry_conclusion, '') = 'success' AND ifNull(a.head_sha, '') != '');
