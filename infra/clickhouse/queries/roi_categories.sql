-- Diagnoses per failure category, and the most frequent failure templates (the first evidence line
-- with numbers, ids and paths masked).
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since.
SELECT category, ifNull(top_template, '') AS template, toUInt64(count()) AS n
FROM {db}.diagnoses FINAL
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
       AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
  AND ts >= {since:DateTime64(3, 'UTC')}
GROUP BY category, template
ORDER BY n DESC, category, template
