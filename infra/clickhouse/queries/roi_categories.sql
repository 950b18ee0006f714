-- Diagnoses per failure category, and the most frequent failure templates (the first evidence line
-- with numbers, ids and paths masked). Parameters: owner, repo ('' = all), since.
SELECT category, ifNull(top_template, '') AS template, toUInt64(count()) AS n
FROM {db}.diagnoses FINAL
WHERE (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String}))
  AND ts >= {since:DateTime64(3, 'UTC')}
GROUP BY category, template
ORDER BY n DESC, category, template
