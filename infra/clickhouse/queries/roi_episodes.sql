-- Failure episodes per day of their first failure. An episode is a job's run of consecutive failed
-- attempts, ended by its next success (the same job: provider, owner, repo, workflow, job name, branch).
-- Time to green = green_at - first failure. "acted": the guard re-ran some attempt of the episode;
-- "healed": a re-run of the guard turned it green (its re-run attempt succeeded).
-- mean time to green (MTTG) = ttg_minutes / greens over all episodes that ended;
-- mean time to recovery (MTTR) = acted_ttg_minutes / acted_greens over the episodes the guard acted on;
-- MTTR without the guard = (acted_ttg_minutes + acted_saved_minutes) / acted_greens: the same episodes
-- had a person re-run each failure the guard's re-run recovered human_response_minutes after it
-- failed, instead of the guard's reaction_minutes (the counterfactual of time saved; a re-run of the
-- guard that did not recover changed nothing, so it adds nothing).
-- MTTR and MTTG are over different episodes and are not to be compared: the guard re-runs what a
-- re-run can fix, and an episode with more failed attempts has more chances of being re-run once.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since, until (the window [since, until)), human_response_minutes (Float64).
WITH
    fails AS (
        SELECT a.job_identity AS job_identity, a.greens_before AS episode, any(a.provider) AS provider, any(a.owner) AS owner, any(a.repo) AS repo,
               min(a.done_at) AS first_failure_at, max(r.acted) AS acted, max(r.any_recovered) AS healed,
               sum(ifNull(r.saved, 0)) AS saved
        FROM {db}.job_attempts AS a
        LEFT JOIN (SELECT job_key, attempt, toUInt8(1) AS acted, toUInt8(max(recovered)) AS any_recovered,
                          sumIf(greatest(0, {human_response_minutes:Float64}
                                            - ifNull(reaction_minutes, {human_response_minutes:Float64})),
                                recovered) AS saved
                   FROM {db}.command_results WHERE rerun GROUP BY job_key, attempt) AS r
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
       toFloat64(ifNull(sumIf(f.saved, g.green_at IS NOT NULL AND f.acted = 1), 0)) AS acted_saved_minutes,
       toUInt64(countIf(g.green_at IS NOT NULL AND f.healed = 1)) AS healed_episodes,
       toUInt64(countIf(g.green_at IS NULL)) AS open_episodes
FROM fails AS f
LEFT JOIN greens AS g ON g.job_identity = f.job_identity AND g.episode = f.episode
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND f.first_failure_at >= {since:DateTime64(3, 'UTC')} AND f.first_failure_at < {until:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
SETTINGS join_use_nulls = 1
