-- Commands per day and action, with what the re-runs achieved and what they saved.
-- time saved, per re-run whose next attempt succeeded: human_response_minutes - reaction_minutes (>= 0).
-- The counterfactual: without the guard a person notices the failure and re-runs it after
-- human_response_minutes on average; the guard re-ran it reaction_minutes after the failure.
-- recovery rate of an action = recovered / decided (re-runs whose next attempt has completed).
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since, human_response_minutes (Float64).
SELECT toDate(ts) AS day,
       action,
       toUInt8(any(c.rerun)) AS rerun,
       toUInt64(count()) AS commands,
       toUInt64(countIf(c.decided)) AS decided,
       toUInt64(countIf(c.recovered)) AS recovered,
       toFloat64(sumIf(greatest(0, {human_response_minutes:Float64} - ifNull(c.reaction_minutes, {human_response_minutes:Float64})),
                       c.recovered)) AS time_saved_minutes,
       toFloat64(sum(c.rerun_cost_usd)) AS rerun_cost_usd
FROM {db}.command_results AS c
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND ts >= {since:DateTime64(3, 'UTC')}
GROUP BY day, action
ORDER BY day, action
