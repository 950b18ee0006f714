-- Tests and their flakiness. A test is flaky on a commit (or, without a commit, in a job) when it both
-- failed and passed there: same code, different result. flaky_test_rate = flaky tests / tests seen.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since.
WITH
    results AS (
        SELECT t.test_id AS test_id, t.outcome AS outcome,
               if(j.head_sha IS NULL OR j.head_sha = '', t.job_key, j.head_sha) AS code
        FROM {db}.test_results AS t FINAL
        LEFT JOIN (SELECT job_key, attempt, head_sha FROM {db}.job_runs FINAL) AS j
            ON j.job_key = t.job_key AND j.attempt = t.attempt
        WHERE (({owner:String} = '' OR t.owner = {owner:String}) AND ({repo:String} = '' OR t.repo = {repo:String}) AND ({provider:String} = '' OR t.provider = {provider:String})
               AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(t.provider, ':', t.owner, '/', t.repo))))
          AND t.ts >= {since:DateTime64(3, 'UTC')}
        SETTINGS join_use_nulls = 1
    ),
    per_code AS (
        SELECT test_id, code, count() AS runs, countIf(outcome IN ('failed', 'error')) AS failures,
               countIf(outcome = 'passed') AS passes
        FROM results
        GROUP BY test_id, code
    )
SELECT p.test_id AS test_id,
       toUInt64(sum(p.runs)) AS runs,
       toUInt64(sum(p.failures)) AS failures,
       toUInt64(countIf(p.failures > 0 AND p.passes > 0)) AS flaky_jobs
FROM per_code AS p
GROUP BY p.test_id
ORDER BY flaky_jobs DESC, failures DESC, test_id
