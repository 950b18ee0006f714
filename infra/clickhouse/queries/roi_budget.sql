-- Budget burn per budget day: the spend the planner recorded against the daily budget when it decided
-- (the repository's own budget when a repository is given). burn = spent / budget.
-- Parameters: owner, repo ('' = all), since.
SELECT budget_day AS day,
       toFloat64(max(if({repo:String} = '', spent_usd, repo_spent_usd))) AS spent_usd,
       max(if({repo:String} = '', daily_budget_usd, repo_budget_usd)) AS budget_usd
FROM {db}.commands FINAL
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}))
  AND budget_day IS NOT NULL
  AND ts >= {since:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
