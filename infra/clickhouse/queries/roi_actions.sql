-- The guard's latest commands with what came of them: when, which job (and its name), the action, the
-- failure category, the executor's outcome (succeeded, failed, skipped, dry_run, refused, unknown; NULL
-- until it reports) and, for a re-run, how its re-run attempt ended (the job's next attempt on the same
-- commit; NULL until it has run). Newest first, at most `limit` rows.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since, limit (UInt32).
SELECT c.ts AS ts, c.provider AS provider, c.owner AS owner, c.repo AS repo, c.job_id AS job_id,
       c.attempt AS attempt, j.job_name AS job_name, c.action AS action, c.category AS category,
       c.reason AS reason, o.status AS status, o.detail AS detail,
       if(c.action IN ('retry', 'retry_backoff', 'retry_tests_isolated', 'rerun_sequential', 'rerun_more_memory',
                       'rerun_larger_runner', 'clear_cache_retry', 'rebuild_no_layer_cache', 'cleanup_retry',
                       'rerun_clean_dependencies'), a.retry_conclusion, NULL) AS rerun_conclusion
FROM {db}.commands AS c FINAL
LEFT JOIN (SELECT id, toNullable(status) AS status, toNullable(detail) AS detail FROM {db}.outcomes FINAL) AS o
    ON o.id = c.id
LEFT JOIN (SELECT job_key, attempt, toNullable(job_name) AS job_name FROM {db}.job_runs FINAL) AS j
    ON j.job_key = c.job_key AND j.attempt = c.attempt
LEFT JOIN (SELECT job_key, attempt, retry_conclusion FROM {db}.job_attempts) AS a
    ON a.job_key = c.job_key AND a.attempt = c.attempt
WHERE (({owner:String} = '' OR c.owner = {owner:String}) AND ({repo:String} = '' OR c.repo = {repo:String}) AND ({provider:String} = '' OR c.provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(c.provider, ':', c.owner, '/', c.repo))))
  AND c.ts >= {since:DateTime64(3, 'UTC')}
ORDER BY c.ts DESC, c.id
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1
