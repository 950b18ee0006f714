-- Daily ROI per repository, as a plain VIEW over the deduplicated (FINAL) fact tables.
-- A plain view rather than a materialized one on purpose: an AggregatingMergeTree fed by inserts into a
-- ReplacingMergeTree would count every re-delivered duplicate, while this view reads FINAL and so counts
-- each id once. The facts are small (one row per job attempt / command), so reading them is cheap.
-- "Automatic" commands are those whose action is not notify_author, notify_oncall, notify or escalate (the same list as
-- healing_guard.warehouse.roi.MANUAL_ACTIONS; change both together, in a new migration).

CREATE VIEW IF NOT EXISTS {db}.roi_daily AS
SELECT
    day,
    provider,
    owner,
    repo,
    sum(jobs)           AS jobs,
    sum(failed_jobs)    AS failed_jobs,
    sum(ci_minutes)     AS ci_minutes,
    sum(ci_cost_usd)    AS ci_cost_usd,
    sum(commands)       AS commands,
    sum(auto_commands)  AS auto_commands,
    sum(retry_cost_usd) AS retry_cost_usd
FROM
(
    SELECT
        toDate(ts) AS day, provider, owner, repo,
        toUInt64(count()) AS jobs,
        toUInt64(countIf(conclusion IN ('failure', 'timed_out'))) AS failed_jobs,
        toFloat64(sum(duration_minutes)) AS ci_minutes,
        toFloat64(sum(cost_usd)) AS ci_cost_usd,
        toUInt64(0) AS commands,
        toUInt64(0) AS auto_commands,
        toFloat64(0) AS retry_cost_usd
    FROM {db}.job_runs FINAL
    GROUP BY day, provider, owner, repo
    UNION ALL
    SELECT
        toDate(ts) AS day, provider, owner, repo,
        toUInt64(0), toUInt64(0), toFloat64(0), toFloat64(0),
        toUInt64(count()),
        toUInt64(countIf(action NOT IN ('notify_author', 'notify_oncall', 'notify', 'escalate'))),
        toFloat64(sumIf(estimated_cost_usd, action NOT IN ('notify_author', 'notify_oncall', 'notify', 'escalate')))
    FROM {db}.commands FINAL
    GROUP BY day, provider, owner, repo
)
GROUP BY day, provider, owner, repo;
