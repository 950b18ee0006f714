-- Failure episodes per day of their first failure. An episode is a job's run of consecutive failed
-- attempts, ended by its next success (the same job: provider, owner, repo, workflow, job name, branch).
-- Time to green = green_at - first failure. "acted": the guard re-ran some attempt of the episode.
-- mean time to green (MTTG) = ttg_minutes / greens over all episodes;
-- mean time to recovery (MTTR) = acted_ttg_minutes / acted_greens over the episodes the guard acted on.
-- Parameters: provider, owner, repo ('' = all), since, until (the window [since, until)).
WITH
    fails AS (
        SELECT a.job_identity AS job_identity, a.greens_before AS episode, any(a.provider) AS provider, any(a.owner) AS owner, any(a.repo) AS repo,
               min(a.done_at) AS first_failure_at, max(r.acted) AS acted
        FROM {db}.job_attempts AS a
        LEFT JOIN (SELECT DISTINCT job_key, attempt, toUInt8(1) AS acted FROM {db}.command_results WHERE rerun) AS r
            ON r.job_key = a.job_key AND r.attempt = a.attempt
        WHERE a.failed
        GROUP BY job_identity, episode
    ),
    greens AS (
        SELECT job_identity, greens_before - 1 AS episode, toNullable(done_at) AS green_at
        FROM {db}.job_attempts
        WHERE conclusion = 'success'
    )
SELECT toDate(f.first_failure_at) AS day,
       toUInt64(count()) AS episodes,
       toUInt64(countIf(g.green_at IS NOT NULL)) AS greens,
       toFloat64(ifNull(sumIf(dateDiff('millisecond', f.first_failure_at, g.green_at) / 60000.0,
                              g.green_at IS NOT NULL), 0)) AS ttg_minutes,
       toUInt64(countIf(g.green_at IS NOT NULL AND f.acted = 1)) AS acted_greens,
       toFloat64(ifNull(sumIf(dateDiff('millisecond', f.first_failure_at, g.green_at) / 60000.0,
                              g.green_at IS NOT NULL AND f.acted = 1), 0)) AS acted_ttg_minutes,
       toUInt64(countIf(g.green_at IS NULL)) AS open_episodes
FROM fails AS f
LEFT JOIN greens AS g ON g.job_identity = f.job_identity AND g.episode = f.episode
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String}))
  AND f.first_failure_at >= {since:DateTime64(3, 'UTC')} AND f.first_failure_at < {until:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
SETTINGS join_use_nulls = 1
