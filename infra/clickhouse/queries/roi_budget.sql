-- Budget burn per day: the guard's retry spend (the estimated cost of its commands, which is what its
-- budget ledger counts) against the configured daily budget: cost_tracking.daily_budget_usd for all
-- repositories, repo_daily_budget_usd when a repository is given. burn = spent / budget.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since, daily_budget_usd, repo_budget_usd (Float64; 0 = none).
SELECT ifNull(budget_day, toString(toDate(ts))) AS day,
       toFloat64(sum(estimated_cost_usd)) AS spent_usd,
       if({repo:String} = '', {daily_budget_usd:Float64}, {repo_budget_usd:Float64}) AS budget_usd
FROM {db}.commands FINAL
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND ts >= {since:DateTime64(3, 'UTC')}
GROUP BY day
HAVING spent_usd > 0
ORDER BY day
