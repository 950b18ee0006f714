-- ROI building blocks (see infra/clickhouse/queries/ for the analysts' queries and README.md for the
-- definitions).
--
-- job_attempts: every completed attempt (success, failure, timed_out) of job_runs, deduplicated (FINAL),
-- with the attempt that came next for the same job. "The same job" is the job's identity: provider,
-- owner, repo, workflow, job name and branch, so a re-run (which may get a new job id on GitHub) and
-- the next push to the branch both count as the job's next attempt. greens_before counts the successes
-- up to and including this attempt: a failure belongs to the failure episode numbered greens_before, and
-- a success ends the episode numbered greens_before - 1.

CREATE VIEW IF NOT EXISTS {db}.job_attempts AS
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
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS greens_before
FROM
(
    SELECT *,
           coalesce(completed_at, ts) AS done_at,
           cityHash64(provider, owner, repo, ifNull(workflow, ''), job_name, ifNull(branch, '')) AS job_identity
    FROM {db}.job_runs FINAL
    WHERE conclusion IN ('success', 'failure', 'timed_out')
)
WINDOW w AS (PARTITION BY job_identity ORDER BY done_at, attempt, id
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);

-- command_results: every command (FINAL) with what followed it. A rerun command (the executor re-runs
-- the job without a person; the list is healing_guard.executor.core.RERUN_ACTIONS) is "decided" once
-- the job's next attempt has completed, and "recovered" when that attempt succeeded. reaction_minutes:
-- from the failed attempt's completion to the command. rerun_cost_usd: the next attempt's CI cost, or
-- the planner's estimate while it has not run.

CREATE VIEW IF NOT EXISTS {db}.command_results AS
SELECT
    c.id AS command_id, c.ts AS ts, c.provider AS provider, c.owner AS owner, c.repo AS repo,
    c.job_key AS job_key, c.job_id AS job_id, c.attempt AS attempt, c.action AS action, c.category AS category,
    c.confidence AS confidence, c.estimated_cost_usd AS estimated_cost_usd,
    c.action IN ('retry', 'retry_backoff', 'retry_tests_isolated', 'rerun_sequential', 'rerun_more_memory',
                      'rerun_larger_runner', 'clear_cache_retry', 'rebuild_no_layer_cache', 'cleanup_retry',
                      'rerun_clean_dependencies') AS rerun,
    a.done_at AS failed_at,
    rerun AND a.next_conclusion IS NOT NULL AS decided,
    rerun AND ifNull(a.next_conclusion = 'success', 0) AS recovered,
    if(a.done_at IS NULL, NULL, dateDiff('millisecond', a.done_at, c.ts) / 60000.0) AS reaction_minutes,
    if(rerun, ifNull(a.next_cost_usd, c.estimated_cost_usd), 0) AS rerun_cost_usd,
    o.status AS outcome_status
FROM {db}.commands AS c FINAL
LEFT JOIN (SELECT job_key, attempt, toNullable(done_at) AS done_at, next_conclusion, next_cost_usd
           FROM {db}.job_attempts) AS a
    ON a.job_key = c.job_key AND a.attempt = c.attempt
LEFT JOIN (SELECT id, toNullable(status) AS status FROM {db}.outcomes FINAL) AS o ON o.id = c.id
SETTINGS join_use_nulls = 1;

-- retries_avoided: failed attempts the guard diagnosed and did not re-run, where a re-run would not
-- have helped as far as the facts tell: the job's next attempt is not a success on the same commit.
-- A blind retry-once policy (what CI retry settings do) would have paid cost_usd again for each.

CREATE VIEW IF NOT EXISTS {db}.retries_avoided AS
SELECT a.job_key AS job_key, a.attempt AS attempt, a.provider AS provider, a.owner AS owner, a.repo AS repo,
       a.done_at AS done_at, a.cost_usd AS cost_usd, d.category AS category
FROM {db}.job_attempts AS a
INNER JOIN (SELECT job_key, attempt, any(category) AS category FROM {db}.diagnoses FINAL
            GROUP BY job_key, attempt) AS d
    ON d.job_key = a.job_key AND d.attempt = a.attempt
WHERE a.failed
  AND (a.job_key, a.attempt) NOT IN (SELECT job_key, attempt FROM {db}.command_results WHERE rerun)
  AND NOT (ifNull(a.next_conclusion, '') = 'success' AND a.next_head_sha IS NOT NULL
           AND a.next_head_sha = a.head_sha);

-- costs: one ledger of every priced fact, for analysts who want dollars in one place. kind is
-- 'ci_run' (a completed attempt's CI cost), 'rerun' (what an automatic re-run cost, or its estimate
-- until it ran) or 'avoided' (a useless retry not made, priced at the failed attempt's cost).

CREATE VIEW IF NOT EXISTS {db}.costs AS
SELECT 'ci_run' AS kind, toDate(done_at) AS day, provider, owner, repo, job_key, attempt, '' AS action,
       cost_usd AS usd
FROM {db}.job_attempts
UNION ALL
SELECT 'rerun', toDate(ts), provider, owner, repo, job_key, attempt, action, rerun_cost_usd
FROM {db}.command_results
WHERE rerun
UNION ALL
SELECT 'avoided', toDate(done_at), provider, owner, repo, job_key, attempt, '', cost_usd
FROM {db}.retries_avoided;

-- roi_daily_repo: daily ROI per repository, materialized. A refreshable materialized view: every
-- 5 minutes it recomputes the days from the views above (deduplicated facts) and swaps the result in
-- atomically, so a re-delivered fact is never counted twice (an insert-triggered materialized view
-- would count it). time_saved_minutes uses the default human response time, 30 minutes; `guard report`
-- and the API compute with the configured one.

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.roi_daily_repo
REFRESH EVERY 5 MINUTE
ENGINE = MergeTree
ORDER BY (owner, repo, day)
AS
SELECT
    day, owner, repo,
    sum(jobs) AS jobs,
    sum(failed_jobs) AS failed_jobs,
    sum(ci_cost_usd) AS ci_cost_usd,
    sum(reruns) AS reruns,
    sum(recovered) AS recovered,
    sum(time_saved_minutes) AS time_saved_minutes,
    sum(rerun_cost_usd) AS rerun_cost_usd,
    sum(cost_avoided_usd) AS cost_avoided_usd
FROM
(
    SELECT toDate(done_at) AS day, owner, repo,
           toUInt64(count()) AS jobs, toUInt64(countIf(failed)) AS failed_jobs, toFloat64(sum(cost_usd)) AS ci_cost_usd,
           toUInt64(0) AS reruns, toUInt64(0) AS recovered, toFloat64(0) AS time_saved_minutes,
           toFloat64(0) AS rerun_cost_usd, toFloat64(0) AS cost_avoided_usd
    FROM {db}.job_attempts
    GROUP BY day, owner, repo
    UNION ALL
    SELECT toDate(ts), owner, repo, 0, 0, 0,
           toUInt64(countIf(rerun)), toUInt64(countIf(recovered)),
           toFloat64(sumIf(greatest(0, 30 - ifNull(reaction_minutes, 30)), recovered)),
           toFloat64(sum(rerun_cost_usd)), 0
    FROM {db}.command_results
    GROUP BY toDate(ts), owner, repo
    UNION ALL
    SELECT toDate(done_at), owner, repo, 0, 0, 0, 0, 0, 0, 0, toFloat64(sum(cost_usd))
    FROM {db}.retries_avoided
    GROUP BY toDate(done_at), owner, repo
)
GROUP BY day, owner, repo;
