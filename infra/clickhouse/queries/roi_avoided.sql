-- Cost avoided per day: failed attempts the guard diagnosed and did not re-run, where the job's next
-- attempt was not a success on the same commit (so a re-run would not have helped), priced at the
-- attempt's own CI cost: what a blind retry-once policy would have spent again.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since.
SELECT toDate(done_at) AS day,
       toUInt64(count()) AS attempts,
       toFloat64(sum(cost_usd)) AS cost_avoided_usd
FROM {db}.retries_avoided
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND done_at >= {since:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
