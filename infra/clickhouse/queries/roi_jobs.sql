-- Completed job attempts per day: how many, how many failed, CI minutes and their cost.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since, until (the window [since, until)) (DateTime64(3, 'UTC')).
SELECT toDate(done_at) AS day,
       toUInt64(count()) AS jobs,
       toUInt64(countIf(failed)) AS failed_jobs,
       toFloat64(sum(duration_minutes)) AS ci_minutes,
       toFloat64(sum(cost_usd)) AS ci_cost_usd,
       max(if(failed, toNullable(done_at), NULL)) AS last_failure_at
FROM {db}.job_attempts
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND done_at >= {since:DateTime64(3, 'UTC')} AND done_at < {until:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
