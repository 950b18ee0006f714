-- Fact tables of the self-healing pipeline guard.
-- {db} is replaced by the database name; statements end with ';' at the end of a line.
--
-- Every table:
--   * ReplacingMergeTree(ts): facts are delivered at least once, so duplicates collapse by the sorting
--     key. Queries read with FINAL (deduplicates across parts and partitions at read time); background
--     merges deduplicate eventually within a partition. Version = ts (the event time), so the latest
--     event about an id wins whatever order duplicates arrive in; equal versions keep the last insert.
--   * ORDER BY (owner, repo, id): id alone decides identity (it already contains the job key, so
--     owner/repo are functions of id and cannot split a duplicate), and the (owner, repo) prefix lets
--     per-repository dashboards skip granules.
--   * PARTITION BY month of ts; TTL on ingested_at, not ts: a backfill of old CI history must not be
--     dropped by the next merge just because its events are older than the retention window.
--   * DateTime64(3, 'UTC') for times; LowCardinality for small vocabularies; Nullable where the source
--     record may not know the value.

CREATE TABLE IF NOT EXISTS {db}.job_runs
(
    id               String,
    job_key          String,
    provider         LowCardinality(String),
    owner            LowCardinality(String),
    repo             LowCardinality(String),
    job_id           String,
    job_name         String,
    workflow         Nullable(String),
    run_id           Nullable(String),
    attempt          UInt32,
    conclusion       LowCardinality(Nullable(String)),
    exit_code        Nullable(Int32),
    runner_size      LowCardinality(Nullable(String)),
    branch           Nullable(String),
    head_sha         Nullable(String),
    queued_at        Nullable(DateTime64(3, 'UTC')),
    started_at       Nullable(DateTime64(3, 'UTC')),
    completed_at     Nullable(DateTime64(3, 'UTC')),
    duration_minutes Float64,
    cost_usd         Float64,
    ts               DateTime64(3, 'UTC'),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (owner, repo, id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS {db}.diagnoses
(
    id           String,
    job_key      String,
    provider     LowCardinality(String),
    owner        LowCardinality(String),
    repo         LowCardinality(String),
    job_id       String,
    attempt      UInt32,
    category     LowCardinality(String),
    confidence   Float64,
    evidence     String COMMENT 'JSON list of {line, text, pattern}',
    top_template Nullable(String) COMMENT 'first evidence line with numbers and hex ids masked',
    exit_code    Nullable(Int32),
    failed_tests Array(String),
    log_lines    UInt32,
    log_complete Bool,
    ts           DateTime64(3, 'UTC'),
    ingested_at  DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (owner, repo, id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS {db}.commands
(
    id                  String,
    job_key             String,
    provider            LowCardinality(String),
    owner               LowCardinality(String),
    repo                LowCardinality(String),
    job_id              String,
    attempt             UInt32,
    run_id              Nullable(String),
    action              LowCardinality(String),
    category            LowCardinality(String),
    confidence          Float64,
    reason              String,
    parameters          String COMMENT 'JSON object',
    estimated_cost_usd  Float64,
    budget_day          Nullable(String),
    spent_usd           Nullable(Float64),
    daily_budget_usd    Nullable(Float64),
    repo_spent_usd      Nullable(Float64),
    repo_budget_usd     Nullable(Float64),
    job_retries         Nullable(UInt32),
    max_retries_per_job Nullable(UInt32),
    ts                  DateTime64(3, 'UTC'),
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (owner, repo, id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS {db}.outcomes
(
    id          String COMMENT 'command_id of the command this reports on',
    job_key     String,
    provider    LowCardinality(String),
    owner       LowCardinality(String),
    repo        LowCardinality(String),
    job_id      String,
    action      LowCardinality(String),
    status      LowCardinality(String),
    detail      String,
    http_status Nullable(Int32),
    ts          DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (owner, repo, id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS {db}.test_results
(
    id          String,
    job_key     String,
    provider    LowCardinality(String),
    owner       LowCardinality(String),
    repo        LowCardinality(String),
    job_id      String,
    attempt     UInt32,
    test_id     String,
    outcome     LowCardinality(String),
    duration_s  Nullable(Float64),
    message     Nullable(String),
    p_fail      Nullable(Float64) COMMENT 'per-test model P(fail) before learning this result',
    ts          DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (owner, repo, id)
TTL toDateTime(ingested_at) + INTERVAL 400 DAY;
