-- Tests the guard judged flaky: the tests its flaky-test re-runs selected (retry_tests_isolated and
-- rerun_sequential re-run only the failed tests that its per-test model holds flaky: parameters.tests)
-- and the tests it quarantined (quarantine_test, parameters.test_id). roi_flaky_tests.sql counts what the
-- results show (failed and passed on one commit); the report's flaky-test rate counts both.
-- Parameters: provider, owner, repo ('' = all), scoped (UInt8: 1 = only the repositories in repos, Array(String) of 'provider:owner/repo'), since.
SELECT test_id,
       toUInt64(countIf(kind = 'rerun')) AS guard_reruns,
       toUInt8(countIf(kind = 'quarantine') > 0) AS quarantined
FROM
(
    SELECT arrayJoin(JSONExtract(parameters, 'tests', 'Array(String)')) AS test_id, 'rerun' AS kind
    FROM {db}.commands FINAL
    WHERE action IN ('retry_tests_isolated', 'rerun_sequential')
      AND (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
           AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
      AND ts >= {since:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT JSONExtractString(parameters, 'test_id') AS test_id, 'quarantine' AS kind
    FROM {db}.commands FINAL
    WHERE action = 'quarantine_test'
      AND (({owner:String} = '' OR owner = {owner:String}) AND ({repo:String} = '' OR repo = {repo:String}) AND ({provider:String} = '' OR provider = {provider:String})
           AND ({scoped:UInt8} = 0 OR has({repos:Array(String)}, concat(provider, ':', owner, '/', repo))))
      AND ts >= {since:DateTime64(3, 'UTC')}
)
WHERE test_id != ''
GROUP BY test_id
ORDER BY test_id
