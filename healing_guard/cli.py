"""``guard``: the command line. Builds the one Settings object and hands it to the parts it runs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Optional

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from .action_run import action_app
from .bench.cli import bench_app
from .directive_cli import directive_app
from .up import up_command
from .watch import watch_command
from .executor.cli import executor_command
from .flaky.cli import flakiness_app
from .platforms.junit_cli import ingest_app
from .platforms.webhook_cli import webhook_app
from .settings import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Self-healing pipeline guard: diagnoses failed CI jobs and sends cost-aware fixes.")
schemas_app = typer.Typer(no_args_is_help=True, help="Record schemas of the guard's topics.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the guard.")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")
app.add_typer(flakiness_app, name="flakiness")
app.add_typer(webhook_app, name="webhook")
app.add_typer(ingest_app, name="ingest")
app.add_typer(directive_app, name="directive")
app.add_typer(action_app, name="action")
app.command("up")(up_command)
app.command("watch")(watch_command)
config_app = typer.Typer(no_args_is_help=True, help="The guard's config files: check what it understands of them.")
app.add_typer(config_app, name="config")
app.command("executor", help="Carry out guard.actions through the platforms' APIs (dry run unless --live).")(
    executor_command)
console = Console()
err = Console(stderr=True, soft_wrap=True)  # errors hold paths: never wrap them

ConfigOpt = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)")
BrokerOpt = typer.Option(None, "--broker", help="kafka://host:port, or 'embedded' (GUARD_BROKER_URL)")
DsnOpt = typer.Option(None, "--clickhouse-dsn", help="chdb://PATH or http(s)://host:port (GUARD_CLICKHOUSE_DSN)")
PrefixOpt = typer.Option(None, "--topic-prefix", help="prefix of every topic name (GUARD_TOPIC_PREFIX)")


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    try:
        s = load_settings(config, **overrides)
        if s.strategies_file:
            from .strategies_config import apply_to_settings, load_strategies

            s = apply_to_settings(s, load_strategies(s.strategies_file))
        return s
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command()
def worker(
    config: Optional[Path] = ConfigOpt,
    broker: Optional[str] = BrokerOpt,
    clickhouse_dsn: Optional[str] = DsnOpt,
    topic_prefix: Optional[str] = PrefixOpt,
    app_id: Optional[str] = typer.Option(None, "--app-id", help="consumer group / app id (GUARD_APP_ID)"),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="partitions of every topic"),
    no_facts: bool = typer.Option(False, "--no-facts", help="do not write facts to ClickHouse from this worker"),
    create_topics: bool = typer.Option(True, "--create-topics/--no-create-topics",
                                       help="create missing topics before starting"),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="debug, info, warning or error"),
) -> None:
    """Run a stream worker: diagnoses jobs, learns test flakiness, emits commands and facts."""
    from .brokers import TansuBroker
    from .streams.run import run_worker
    from .streams.worker import build_guard
    from .streams.topics import ensure_topics

    s = _settings(config, broker_url=broker, clickhouse_dsn=clickhouse_dsn, topic_prefix=topic_prefix,
                  app_id=app_id, partitions=partitions, log_level=log_level,
                  facts_enabled=False if no_facts else None)
    tansu = None
    if s.broker_url == "embedded":
        tansu = TansuBroker()
        s = _replace(s, broker_url="kafka://" + tansu.start())
        err.print(f"embedded broker (Tansu, memory only) on {s.bootstrap}")
    from .logs import show_decisions

    show_decisions(s.log_level)  # one line per decision, even at the default level (warning)
    try:
        if create_topics:
            asyncio.run(ensure_topics(s))
        run_worker(build_guard(s).app, s)
    finally:
        if tansu is not None:
            tansu.stop()


def _replace(s: Settings, **kw: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(s, **kw)


@app.command()
def demo(
    jobs: int = typer.Option(300, "--jobs", help="sample jobs to replay"),
    seed: int = typer.Option(7, "--seed", help="seed of the sample traffic"),
    data_dir: Path = typer.Option(Path(".guard"), "--data-dir", help="where the chDB data directory lives"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the summary"),
    timeout: float = typer.Option(300.0, "--timeout", help="give up after this many seconds"),
) -> None:
    """Start the embedded broker and database, replay sample CI traffic, print findings and ROI."""
    from .demo import run_demo

    s = _settings(None, clickhouse_dsn=f"chdb://{data_dir.resolve() / 'chdb'}")
    code = run_demo(s, jobs=jobs, seed=seed, quiet=quiet, timeout=timeout, console=console)
    raise typer.Exit(code)


@app.command()
def backtest(
    files: Optional[list[Path]] = typer.Argument(None, help="recordings: JSON lines of {topic, record[, key]} "
                                                            "(what `guard forward --dry-run` prints); .gz too"),
    from_broker: Optional[str] = typer.Option(None, "--from-broker",
                                              help="read the guard's ci.* topics on this kafka://host:port instead"),
    topic_prefix: str = typer.Option("", "--topic-prefix", help="with --from-broker: the topics' prefix"),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="backtest N jobs of the bundled sample traffic"),
    seed: int = typer.Option(7, "--seed", help="with --sample: its seed"),
    config: Optional[Path] = ConfigOpt,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir",
                                            help="keep the backtest's chDB here (database guard_backtest) to query "
                                                 "it later; default: a temporary directory"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object: counts, dry-run calls and the ROI"),
    timeout: float = typer.Option(1800.0, "--timeout", help="give up after this many seconds"),
) -> None:
    """Shadow mode over history: replay recorded events through the real pipeline, the executor in dry
    run, and report what the guard would have done (per category and action) and the ROI it would have
    produced. Your --config (budgets, thresholds, strategies) applies."""
    import shutil
    import tempfile

    from .backtest import dry_run, print_summary, read_files, read_topics, sample_recording, summarize
    from .traffic_replay import replay
    from .roi_view import print_report
    from .warehouse.read import WarehouseReader

    sources = sum(1 for x in (files, from_broker, sample) if x)
    if sources != 1:
        err.print("[red]give recordings (FILE...), --from-broker kafka://host:port, or --sample N: exactly one[/red]")
        raise typer.Exit(2)
    out = Console(stderr=True, soft_wrap=True) if json_out else console
    if files:
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            err.print(f"[red]no such recording:[/red] {escape(', '.join(missing))}")
            raise typer.Exit(2)
        rec = read_files(files)
    elif from_broker:
        if not from_broker.startswith("kafka://"):
            err.print("[red]--from-broker:[/red] expected kafka://host:port")
            raise typer.Exit(2)
        from .kafka_auth import client_options

        security = client_options(_settings(config))  # the broker credentials (GUARD_BROKER_USERNAME, ...)
        try:
            rec = asyncio.run(read_topics(from_broker[len("kafka://"):], topic_prefix, security=security))
        except Exception as exc:
            err.print(f"[red]cannot read the topics from {escape(from_broker)}:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
    else:
        rec = sample_recording(int(sample or 0), seed)
    if not rec.messages:
        err.print(f"[red]nothing to replay[/red] ({len(rec.rejected)} records rejected)")
        for r in rec.rejected[:10]:
            err.print(f"  {escape(r)}")
        raise typer.Exit(1)
    workdir = Path(tempfile.mkdtemp(prefix="guard-backtest-"))
    chdir = (data_dir.resolve() if data_dir else workdir) / "chdb"
    s = _settings(config, clickhouse_dsn=f"chdb://{chdir}")
    import contextlib

    try:
        # with --json, stdout carries the one JSON object only: the worker's terminal codes go to stderr
        with contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext():
            result, client = replay(s, rec.messages, database="guard_backtest", console=out, timeout=timeout,
                                    app_name="backtest", label="replaying the recording")
        if result.code != 0 or client is None:
            raise typer.Exit(1)
        executed = dry_run(result.commands, workdir / "executor")
        summary = summarize(rec, result.findings, result.commands, executed)
        reader = WarehouseReader.from_settings(client, s, database="guard_backtest")
        roi = reader.report(days=None)
        if json_out:
            sys.stdout.write(orjson.dumps({**summary, "roi": roi}).decode() + "\n")
        else:
            print_summary(console, summary)
            console.print("[bold]the ROI it would have produced[/bold] (all of the recording):")
            print_report(console, roi, None, s.human_response_minutes)
            if data_dir:
                console.print(f"kept in {chdir}: guard report --all-time --database guard_backtest "
                              f"(with GUARD_CLICKHOUSE_DSN=chdb://{chdir})", highlight=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _analyzer(s: Settings, model: Optional[Path] = None) -> Any:
    """The offline analyzer, with pattern-file and label-model errors turned into clear exits."""
    from .log_files import Analyzer
    from .patterns.library import PatternError

    try:
        learner = None
        if model is not None:  # River is imported only when a label model is used
            from .classify.learner import LabelLearner

            learner = LabelLearner.load(model)
        return Analyzer(s, learner=learner)
    except PatternError as exc:
        err.print(f"[red]pattern library error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except (OSError, ValueError, EOFError) as exc:
        err.print(f"[red]cannot load the label model:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _inputs(files: Optional[list[str]]) -> list[str]:
    if files:
        return files
    if sys.stdin.isatty():
        err.print("[red]no input:[/red] give one or more log files, or pipe a log into stdin (or pass -)")
        raise typer.Exit(2)
    return ["-"]


PatternFileOpt = typer.Option(None, "--pattern-file", "-p", help="extra pattern library file (repeatable)")
ModelOpt = typer.Option(None, "--model", help="label model written by `guard learn` (or pipeline.label_model)")


@app.command()
def analyze(
    files: Optional[list[str]] = typer.Argument(None, help="log files; '-' or nothing for stdin"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per file, one per line"),
    config: Optional[Path] = ConfigOpt,
    pattern_file: Optional[list[Path]] = PatternFileOpt,
    model: Optional[Path] = ModelOpt,
    exit_code: Optional[int] = typer.Option(None, "--exit-code", help="exit code of the failed step, if known"),
    conclusion: Optional[str] = typer.Option(None, "--conclusion", help="platform conclusion, e.g. timed_out"),
    duration_minutes: Optional[float] = typer.Option(
        None, "--duration-minutes", min=0, help="how long the job ran (prices a rerun as the worker would)"),
) -> None:
    """Say why a CI job failed: category, confidence, the lines that prove it, and what the worker would do.

    Streams each log in blocks, so a 100 MB log or a 50 MB single line is analysed in bounded memory.
    """
    s = _settings(config)
    if pattern_file:
        s = _replace(s, pattern_files=tuple(s.pattern_files) + tuple(str(p) for p in pattern_file))
    an = _analyzer(s, model)
    failed = 0
    for r in an.analyze_paths(_inputs(files), exit_code=exit_code, conclusion=conclusion,
                              duration_minutes=duration_minutes):
        rep = an.report(r)
        if json_out:
            sys.stdout.write(orjson.dumps(rep).decode() + "\n")
            sys.stdout.flush()
            failed += "error" in rep
            continue
        if "error" in rep:
            err.print(f"[red]{escape(rep['file'])}: {escape(rep['error'])}[/red]")
            failed += 1
            continue
        act = rep["action"] + (" (automatic)" if rep["automatic"] else "")
        console.print(f"[bold]{escape(rep['file'])}[/bold]: [cyan]{rep['category']}[/cyan] "
                      f"confidence {rep['confidence']:.2f} -> {act}  ({rep['lines']} lines)", highlight=False)
        for e in rep["evidence"]:
            console.print(f"  {e['line']:>7}  {escape(e['text'][:160])}  [dim]{escape(e['pattern'])}[/dim]",
                          highlight=False)
        if "signature" in rep:
            console.print(f"  signature: {escape(rep['signature'])}", highlight=False)
        console.print(f"  [green]remediation:[/green] {escape(rep['remediation'])}", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command()
def unknowns(
    files: Optional[list[str]] = typer.Argument(None, help="log files to cluster; none: read the warehouse"),
    top: int = typer.Option(20, "--top", help="how many clusters to list"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per cluster"),
    config: Optional[Path] = ConfigOpt,
    clickhouse_dsn: Optional[str] = DsnOpt,
    pattern_file: Optional[list[Path]] = PatternFileOpt,
) -> None:
    """List the largest clusters of failures no pattern explains, with examples: the next patterns to write.

    With FILES, analyses them and clusters the unknown ones; without, reads the unknown diagnoses the
    workers stored in ClickHouse.
    """
    s = _settings(config, clickhouse_dsn=clickhouse_dsn)
    if pattern_file:
        s = _replace(s, pattern_files=tuple(s.pattern_files) + tuple(str(p) for p in pattern_file))
    clusters: list[dict[str, Any]]
    if files:
        from .classify.unknowns import cluster_unknowns

        an = _analyzer(s)
        items: list[tuple[str, Any]] = []
        total = 0
        with err.status(f"analysing 0/{len(files)} logs") as status:  # a spinner on a terminal only
            for r in an.analyze_paths(files):
                status.update(f"analysing {total + 1}/{len(files)} logs ({len(items)} unknown)")
                if r.analysis is None:
                    err.print(f"[red]{escape(r.file)}: {escape(str(r.error))}[/red]")
                    continue
                total += 1
                if r.analysis.diagnosis.category == "unknown":
                    items.append((r.file, r.analysis.signature))
        clusters = [{"signature": c.signature, "count": c.count, "examples": c.examples}
                    for c in cluster_unknowns(items)[:top]]
        err.print(f"{len(items)} of {total} logs are unknown, in {len(cluster_unknowns(items))} clusters")
    else:
        from .warehouse.client import WarehouseConnectionError, connect
        from .warehouse.unknowns import unknown_clusters

        try:
            client = connect(s.clickhouse_dsn)
            clusters = unknown_clusters(client, s.clickhouse_database, top=top)
        except WarehouseConnectionError as exc:
            err.print(f"[red]warehouse:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        except Exception as exc:  # e.g. the tables do not exist yet
            err.print(f"[red]cannot read unknown diagnoses from {s.clickhouse_database}.diagnoses:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
    for c in clusters:
        if json_out:
            sys.stdout.write(orjson.dumps(c).decode() + "\n")
        else:
            console.print(f"[bold]{c['count']:>5}[/bold]  {escape(c['signature'])}", highlight=False)
            console.print(f"       e.g. {escape(', '.join(c['examples']))}", style="dim", highlight=False)
    if not clusters and not json_out:
        console.print("no unknown failures")


@app.command()
def report(
    repo: Optional[str] = typer.Option(None, "--repo", help="owner/repo (default: every repository)"),
    days: Optional[int] = typer.Option(30, "--days", min=1, help="window in days (--all-time: everything)"),
    all_time: bool = typer.Option(False, "--all-time", help="every fact, however old"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object (the API's report shape)"),
    daily: bool = typer.Option(False, "--daily", help="also the day-by-day series"),
    database: Optional[str] = typer.Option(None, "--database",
                                           help="ClickHouse database (default: clickhouse.database; "
                                                "`guard demo` writes guard_demo)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """What the guard did and saved: time and dollars, MTTR / mean time to green, recovery per strategy,
    flaky tests, top failure templates, budget burn (definitions: docs/roi.md)."""
    from .warehouse.client import WarehouseConnectionError, connect
    from .warehouse.migrate import MigrationError, migrate
    from .warehouse.read import WarehouseReader

    owner = name = None
    if repo is not None:
        if "/" not in repo.strip("/"):
            err.print("[red]--repo:[/red] expected owner/repo")
            raise typer.Exit(2)
        owner, name = repo.strip("/").rsplit("/", 1)
    s = _settings(config, **({"clickhouse_database": database} if database else {}))
    window = None if all_time else days
    try:
        client = connect(s.clickhouse_dsn)
        migrate(client, s.clickhouse_database)
        reader = WarehouseReader.from_settings(client, s)
        r = reader.report(owner, name, window)
        series = reader.daily(owner, name, window or 36500) if daily else None
    except (WarehouseConnectionError, MigrationError) as exc:
        err.print(f"[red]warehouse:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if json_out:
        out = {**r, "daily": series} if daily else r
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return
    from .roi_view import print_report

    print_report(console, r, series, s.human_response_minutes)


@app.command("export")
def export_roi(
    once: bool = typer.Option(False, "--once", help="export once and exit (for cron); default: every "
                                                    "reporting.granularity (hourly or daily)"),
    database: Optional[str] = typer.Option(None, "--database", help="ClickHouse database (default: clickhouse.database)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Send the ROI figures of the last day to reporting.export_to as OpenTelemetry metrics (OTLP/HTTP):
    healing_guard_recovery_rate, _time_saved_minutes, _cost_saved_usd, ... (docs/roi.md)."""
    import os
    import time as _time

    from .export import ExportError, endpoint_of, export_report
    from .warehouse.client import WarehouseConnectionError, connect
    from .warehouse.migrate import MigrationError, migrate
    from .warehouse.read import WarehouseReader

    s = _settings(config, **({"clickhouse_database": database} if database else {}))
    try:
        endpoint = endpoint_of(s, os.environ)
    except ExportError as exc:
        err.print(f"[red]export:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    every = 3600.0 if s.export_granularity == "hourly" else 86400.0
    try:
        client = connect(s.clickhouse_dsn)
        migrate(client, s.clickhouse_database)
        reader = WarehouseReader.from_settings(client, s)
    except (WarehouseConnectionError, MigrationError) as exc:
        err.print(f"[red]warehouse:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    while True:
        try:
            n = export_report(reader.report(days=1), endpoint)
            console.print(f"exported {n} ROI data points to {escape(endpoint)}", highlight=False)
        except ExportError as exc:
            err.print(f"[red]export:[/red] {escape(str(exc))}")
            if once:
                raise typer.Exit(1) from None
        if once:
            return
        try:
            _time.sleep(every)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _register_api() -> None:
    from .rest.cli import api_command, keys_app

    app.command("api")(api_command)
    app.add_typer(keys_app, name="api-keys", help="API keys of `guard api`: create, list, revoke (stored hashed)")


_register_api()


@app.command()
def learn(
    labels: Path = typer.Option(..., "--labels", help="CSV with columns file,category (confirmed labels)"),
    logs: Path = typer.Option(..., "--logs", help="folder the label file's paths are relative to"),
    model: Optional[Path] = typer.Option(None, "--model", help="label model file: updated if it exists, else created"),
    text_model: Optional[Path] = typer.Option(
        None, "--text-model",
        help="text model file: updated if it exists, else started from the packaged one; point "
             "pipeline.text_model (GUARD_TEXT_MODEL) at it to use it"),
    weight: int = typer.Option(10, "--weight", min=1, max=1000,
                               help="with --text-model: how many training examples one confirmed label counts as "
                                    "(the packaged model learned from about 280 per category)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Teach the guard from confirmed labels (online, one log at a time, River): the label model
    (--model) and/or the text model (--text-model)."""
    from .log_files import read_labels

    if model is None and text_model is None:
        err.print("[red]learn:[/red] give --model (label model) and/or --text-model (text model) to update")
        raise typer.Exit(2)
    try:
        rows = read_labels(labels)
    except (OSError, ValueError) as exc:
        err.print(f"[red]labels:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    s = _settings(config)
    learner = None
    if model is not None:
        from .classify.learner import LabelLearner

        learner = LabelLearner.load(model) if model.exists() else LabelLearner()
    tm = None
    if text_model is not None:
        from .classify.text_model import TextModel, packaged_path

        start = text_model if text_model.exists() else packaged_path()
        try:
            tm = TextModel.load(start) if start is not None else TextModel()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            err.print(f"[red]--text-model:[/red] {escape(str(start))}: {escape(str(exc))}")
            raise typer.Exit(2) from None
    # learn from the rules' view, not the models' own
    an = _analyzer(_replace(s, label_model="", text_model="off"))
    from .engine import offline_job
    from .engine.core import text_features

    missing = 0
    with console.status("learning") as status:
        for i, (name, category) in enumerate(rows, 1):
            try:
                with (logs / name).open("rb") as fp:
                    ready, a = an.read(fp, offline_job(name))
            except OSError as exc:
                err.print(f"[yellow]{logs / name}: skipped ({exc.strerror or exc})[/yellow]")
                missing += 1
                continue
            if learner is not None:
                learner.learn(a.diagnosis, category, signature=a.signature)
            if tm is not None:
                x = text_features(ready, a.diagnosis.evidence)
                for _ in range(weight):
                    tm.learn_one(x, category)
            status.update(f"learning {i}/{len(rows)}")
    n = len(rows) - missing
    if learner is not None and model is not None:
        learner.save(model)
        console.print(f"learned {n} labels ({learner.labels_seen} in total) -> {model}")
    if tm is not None and text_model is not None:
        tm.info = {**tm.info, "learned_labels": int(tm.info.get("learned_labels", 0)) + n}
        tm.dump(text_model)
        console.print(f"learned {n} labels -> text model {text_model}")
    raise typer.Exit(1 if missing else 0)


@app.command()
def forward(
    files: Optional[list[Path]] = typer.Argument(None, help="log files, in order ('-' or nothing: stdin)"),
    provider: str = typer.Option(..., "--provider", help="github, gitlab, jenkins or circleci"),
    repo: str = typer.Option(..., "--repo", help="owner/repo (GitLab: group/sub/project)"),
    job_id: str = typer.Option(..., "--job-id", help="the platform's job id"),
    attempt: Optional[int] = typer.Option(None, "--attempt", min=1,
                                          help="run attempt (default: GITHUB_RUN_ATTEMPT on GitHub, else 1)"),
    conclusion: Optional[str] = typer.Option(None, "--conclusion",
                                             help="also send the job's completion: success, failure, timed_out, ..."),
    exit_code: Optional[int] = typer.Option(None, "--exit-code", help="with --conclusion: the failed step's exit code"),
    job_name: Optional[str] = typer.Option(None, "--job-name",
                                           help="the job's name (default: GITHUB_JOB, CI_JOB_NAME, JOB_BASE_NAME or "
                                                "CIRCLE_JOB; without one, 'job-<job id>': two jobs never share a name)"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="run / pipeline / build / workflow id (default: "
                                         "GITHUB_RUN_ID, CI_PIPELINE_ID, BUILD_NUMBER or CIRCLE_WORKFLOW_ID)"),
    workflow: Optional[str] = typer.Option(None, "--workflow", help="workflow name (default: GITHUB_WORKFLOW; GitLab "
                                           "CI_JOB_STAGE; Jenkins JOB_NAME; CircleCI from its API)"),
    branch: Optional[str] = typer.Option(None, "--branch", help="branch (default: GITHUB_HEAD_REF or GITHUB_REF_NAME, "
                                         "CI_COMMIT_REF_NAME, BRANCH_NAME or GIT_BRANCH, CIRCLE_BRANCH)"),
    commit: Optional[str] = typer.Option(None, "--commit", help="commit under test (default: GITHUB_SHA, or a pull "
                                         "request's head; CI_COMMIT_SHA; GIT_COMMIT; CIRCLE_SHA1)"),
    runner: Optional[str] = typer.Option(None, "--runner", help="the runner's name (default: RUNNER_NAME, "
                                         "CI_RUNNER_DESCRIPTION, NODE_NAME)"),
    runner_labels: Optional[str] = typer.Option(None, "--runner-labels", help="the runner's labels / tags, "
                                                "comma-separated (default: RUNNER_OS, RUNNER_ARCH; CI_RUNNER_TAGS; "
                                                "NODE_LABELS; CircleCI's resource class from its API)"),
    runner_size: Optional[str] = typer.Option(None, "--runner-size", help="the size class the cost table prices "
                                              "(default: the first runner label, or word of a label or of the "
                                              "runner's name, that is a size of cost_tracking.price_per_minute_usd, "
                                              "e.g. large in saas-linux-large-amd64; else the worker's "
                                              "default_runner_size)"),
    started_at: Optional[str] = typer.Option(None, "--started-at", help="the job's start: ISO 8601, Unix seconds or "
                                             "milliseconds (default: GUARD_JOB_STARTED_AT, CI_JOB_STARTED_AT; "
                                             "Jenkins: BUILD_URL's API; GitHub: the runner's Runner.Worker process; "
                                             "CircleCI: its API with GUARD_CIRCLECI_TOKEN)"),
    completed_at: Optional[str] = typer.Option(None, "--completed-at", help="the job's end (default: now)"),
    duration_minutes: Optional[str] = typer.Option(None, "--duration-minutes",
                                                   help="the job's duration, instead of one of the two times"),
    from_env: str = typer.Option("auto", "--from-env", help="which CI variables describe the job sent: job (this "
                                 "process runs in it), run (another job of this run / pipeline: only the run's "
                                 "branch, commit, workflow, run id, attempt), off, or auto (job, unless CI_JOB_ID, "
                                 "BUILD_NUMBER or CIRCLE_BUILD_NUM names another job than --job-id)"),
    chunk_lines: int = typer.Option(500, "--chunk-lines", min=1),
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="tail the files while the job writes them; a file is done once it has not "
                                     "grown for --idle-timeout seconds (or on Ctrl-C)"),
    idle_timeout: float = typer.Option(30.0, "--idle-timeout", min=0.0, help="with --follow: seconds of quiet"),
    strategy: Optional[str] = typer.Option(None, "--strategy",
                                           help="with --conclusion: what the guard may do for this job: auto, off, "
                                                "or healing-strategies.yml names, comma-separated"),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", min=0,
                                              help="with --conclusion: this pipeline's retry limit for the job"),
    config: Optional[Path] = ConfigOpt,
    broker: Optional[str] = BrokerOpt,
    topic_prefix: Optional[str] = PrefixOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the records as JSON lines instead of sending"),
    mask_env: bool = typer.Option(True, "--mask-env/--no-mask-env",
                                  help="mask, as the CI platform does, the values of this process's environment "
                                       "variables named like credentials (*TOKEN*, *SECRET*, *PASSWORD*, *API_KEY*, "
                                       "...) and of ::add-mask:: lines, before anything leaves the runner"),
    junit: Optional[list[Path]] = typer.Option(None, "--junit", metavar="PATH",
                                               help="a JUnit XML report of this job (repeat the option for more; "
                                                    "the shell expands globs): its test results go to ci.tests, in "
                                                    "batches, after the log and before the completion; a report "
                                                    "that cannot be read is named on stderr, the rest is still sent "
                                                    "and the exit status is 1"),
) -> None:
    """Ship a job's log to ci.logs (ordered chunks), optionally its JUnit test results to ci.tests and its
    completion to ci.jobs."""
    import time as _time

    from .platforms.forward import (ENV_SCOPES, completion, env_attempt, env_head_sha, follow_blocks, job_details,
                                    junit_results, log_chunks, read_blocks)
    from .platforms.junit_cli import describe_error, redacted, send_batches
    from typing import get_args

    from .schemas import PROVIDERS
    from .schemas.records import Conclusion

    CONCLUSIONS = get_args(Conclusion)

    if provider not in PROVIDERS:
        err.print(f"[red]--provider:[/red] one of {', '.join(PROVIDERS)}, got {escape(provider)!r}")
        raise typer.Exit(2)
    if "/" not in repo.strip("/"):
        err.print("[red]--repo:[/red] expected owner/repo")
        raise typer.Exit(2)
    if conclusion is not None and conclusion not in CONCLUSIONS:
        err.print(f"[red]--conclusion:[/red] one of {', '.join(CONCLUSIONS)}, got {escape(conclusion)!r}")
        raise typer.Exit(2)
    if from_env not in ENV_SCOPES:
        err.print(f"[red]--from-env:[/red] one of {', '.join(ENV_SCOPES)}, got {escape(from_env)!r}")
        raise typer.Exit(2)
    owner, name = repo.strip("/").rsplit("/", 1)
    if strategy is not None:
        from .strategies_config import Strategy as _Strategy

        names = [n.strip() for n in strategy.lower().split(",") if n.strip()]
        unknown = [n for n in names if n not in ("auto", "off") and n not in {x.value for x in _Strategy}]
        if unknown:
            err.print(f"[red]--strategy:[/red] unknown {', '.join(map(repr, unknown))}; auto, off or "
                      f"{', '.join(x.value for x in _Strategy)}")
            raise typer.Exit(2)
    s = _settings(config, broker_url=broker, topic_prefix=topic_prefix)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)

    # the log's chunks and the completion carry one attempt: the flag, else the platform's (GitHub's)
    log_attempt = attempt if attempt is not None else env_attempt(provider, os.environ, scope=from_env, warn=warn) or 1

    def blocks() -> Any:
        for f in files or [Path("-")]:
            if str(f) == "-":
                yield from read_blocks(sys.stdin.buffer)
            else:
                with f.open("rb") as fp:
                    yield from follow_blocks(fp, idle_timeout=idle_timeout) if follow else read_blocks(fp)

    sent = {"chunks": 0, "lines": 0}
    tests: dict[str, Any] = {"sent": None, "bad": 0, "failed": False}

    def records() -> Any:
        """The log's records in order, produced lazily: a 100 MB log is never held whole."""
        from .patterns.masks import from_environ

        for ch in log_chunks(blocks(), provider=provider, owner=owner, repo=name, job_id=job_id,
                             attempt=log_attempt, chunk_lines_max=chunk_lines,
                             masks=from_environ(os.environ) if mask_env else None):
            sent["chunks"] += 1
            sent["lines"] += len(ch.lines)
            yield s.topics.logs, ch.job_key.encode(), ch.to_json()

    def details() -> dict[str, Any] | None:
        """With --conclusion, the job as the completion describes it (once the log has been read: its end)."""
        if conclusion is None:
            return None
        # the flags, else the CI platform's variables (platforms/forward.py: job_details)
        return job_details(provider, job_id=job_id, env=os.environ, sizes=s.price_per_minute_usd, now=_time.time(),
                           warn=warn, scope=from_env, job_name=job_name, run_id=run_id, attempt=log_attempt,
                           workflow=workflow, branch=branch, commit=commit, runner=runner, runner_labels=runner_labels,
                           size=runner_size, started_at=started_at, completed_at=completed_at,
                           duration_minutes=duration_minutes)

    def test_results(job: dict[str, Any] | None) -> list[Any]:
        """The results of the --junit reports (read once the log is done: the job may still write them while
        it is followed), for the job and commit the completion names; a bad report is reported and skipped."""
        if not junit:
            return []
        head = job["head_sha"] if job is not None else \
            (commit or "").strip() or env_head_sha(provider, os.environ, job_id=job_id, scope=from_env, warn=warn)
        results, errors = junit_results(junit, provider=provider, owner=owner, repo=name, job_id=job_id,
                                        attempt=log_attempt, head_sha=head)
        for e in errors:
            err.print(f"[red]--junit:[/red] {escape(e)}", highlight=False)
        tests["bad"] = len(errors)
        return results

    def completion_record(job: dict[str, Any] | None) -> tuple[str, bytes, bytes] | None:
        if conclusion is None or job is None:
            return None
        ev = completion(provider=provider, owner=owner, repo=name, job_id=job_id, conclusion=conclusion,
                        exit_code=exit_code, chunks=sent["chunks"], now=_time.time(), healing_strategy=strategy,
                        max_retries=max_retries, **job)
        return s.topics.jobs, ev.job_key.encode(), ev.to_json()

    def done() -> None:
        if tests["bad"]:
            err.print(f"{tests['bad']} of {len(junit or [])} JUnit report(s) could not be read", highlight=False)
        if tests["bad"] or tests["failed"]:
            raise typer.Exit(1)

    try:
        if dry_run:
            def show(topic: str, value: bytes) -> None:
                sys.stdout.write(orjson.dumps({"topic": topic, "record": orjson.loads(value)}).decode() + "\n")

            for topic, _, value in records():
                show(topic, value)
            job = details()
            # one TestResult a line (as `guard ingest junit --dry-run`): batches need the topic's partition count
            for r in redacted(test_results(job)):
                show(s.topics.tests, r.to_json())
            last = completion_record(job)
            if last is not None:
                show(last[0], last[2])
            sys.stdout.flush()
            done()
            return
        if s.broker_url == "embedded":
            err.print("[red]forward needs a broker URL (--broker kafka://host:port)[/red]")
            raise typer.Exit(2)

        async def send() -> None:
            from .producers import start_producer

            p = await start_producer(s, max_request_size=16 << 20)
            try:
                for topic, key, value in records():  # one job key, one partition: chunks before completion
                    await p.send_and_wait(topic, key=key, value=value)
                job = details()
                results = test_results(job)
                if results:
                    # acknowledged before the completion is sent: the worker has them when it decides
                    try:
                        tests["sent"] = await send_batches(p, results, s.topics.tests)
                    except Exception as exc:  # the completion still goes: the job is diagnosed from its log
                        tests["failed"] = True
                        err.print(f"[red]could not send the test results to {escape(s.topics.tests)}:[/red] "
                                  f"{escape(describe_error(exc))}", highlight=False)
                last = completion_record(job)
                if last is not None:
                    await p.send_and_wait(last[0], key=last[1], value=last[2])
            finally:
                await p.stop()

        asyncio.run(send())
    except OSError as exc:
        err.print(f"[red]cannot read the log:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except typer.Exit:
        raise
    except Exception as exc:
        err.print(f"[red]could not send to {escape(s.bootstrap)}:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not junit:
        reports = ""
    elif tests["sent"] is not None:
        reports = f", {tests['sent']}"
    elif tests["failed"]:
        reports = ", not its test results"
    else:
        reports = ", no test results"
    console.print(f"sent {sent['chunks']} chunks ({sent['lines']} lines) of {provider}/{owner}/{name}/{job_id}{reports}"
                  + (f" and its completion ({conclusion})" if conclusion else ""), highlight=False, soft_wrap=True)
    done()


@app.command()
def fetcher(
    config: Optional[Path] = ConfigOpt,
    broker: Optional[str] = BrokerOpt,
    topic_prefix: Optional[str] = PrefixOpt,
    grace_seconds: float = typer.Option(30.0, "--grace-seconds",
                                        help="how long a failed job's log may take to arrive before it is fetched"),
    once: bool = typer.Option(False, "--once", help="stop when both topics are drained and no job waits"),
    circleci_vcs: str = typer.Option("github", "--circleci-vcs",
                                     help="VCS of the CircleCI projects: github (gh) or bitbucket (bb)"),
) -> None:
    """Fetch the logs of failed jobs nobody forwarded, through the platforms' APIs, onto ci.logs.

    Credentials: GUARD_GITHUB_TOKEN, GUARD_GITLAB_TOKEN (+ GUARD_GITLAB_URL), GUARD_JENKINS_URL/_USER/_TOKEN,
    GUARD_CIRCLECI_TOKEN. A job that cannot be fetched goes to guard.deadletter with the reason.
    """
    from .platforms.fetch import run_fetcher

    vcs = {"gh": "github", "bb": "bitbucket"}.get(circleci_vcs.lower(), circleci_vcs.lower())
    if vcs not in ("github", "bitbucket"):
        err.print(f"[red]--circleci-vcs:[/red] github or bitbucket, got {escape(circleci_vcs)!r}")
        raise typer.Exit(2)
    s = _settings(config, broker_url=broker, topic_prefix=topic_prefix)
    if s.broker_url == "embedded":
        err.print("[red]fetcher needs a broker URL (--broker kafka://host:port)[/red]")
        raise typer.Exit(2)
    try:
        counts = asyncio.run(run_fetcher(s, once=once, grace_seconds=grace_seconds, circleci_vcs=vcs))
    except KeyboardInterrupt:
        return
    console.print(f"fetched {counts.get('fetched', 0)} logs ({counts.get('chunks', 0)} chunks), "
                  f"{counts.get('failed', 0)} to the dead letter topic", highlight=False)


@schemas_app.command("export")
def schemas_export(directory: Path = typer.Argument(..., help="directory to write <topic>.schema.json into")) -> None:
    """Write a JSON Schema file per topic, for forwarder and executor teams in other languages."""
    from .schemas import TOPIC_RECORDS

    directory.mkdir(parents=True, exist_ok=True)
    for topic, rec in TOPIC_RECORDS.items():
        path = directory / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(rec.json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        console.print(f"wrote {path}")


@topics_app.command("create")
def topics_create(config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
                  topic_prefix: Optional[str] = PrefixOpt,
                  partitions: Optional[int] = typer.Option(None, "--partitions")) -> None:
    """Create the guard's topics (and table changelogs) with their partitions and configs."""
    from .streams.topics import ensure_topics
    from .topics import topic_specs

    s = _settings(config, broker_url=broker, topic_prefix=topic_prefix, partitions=partitions)
    if s.broker_url == "embedded":
        err.print("[red]topics create needs a real broker URL (--broker kafka://host:port)[/red]")
        raise typer.Exit(2)
    asyncio.run(ensure_topics(s))
    for name, (parts, _) in topic_specs(s).items():
        console.print(f"{name}  partitions={parts}")


@config_app.command("check")
def config_check(
    files: list[Path] = typer.Argument(..., help="healing-config.yml, healing-strategies.yml or a pattern file; "
                                                 "any number"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per file"),
) -> None:
    """Validate config files as the guard reads them and print what each key set, with notes on what the
    guard does instead of options a platform cannot carry out. Exit 2 on the first file refused."""
    from .config_check import check
    from .patterns.library import PatternError

    for f in files:
        try:
            r = check(f)
        except (ConfigError, PatternError) as exc:
            err.print(f"[red]refused:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        if json_out:
            sys.stdout.write(orjson.dumps(r.to_dict()).decode() + "\n")
            continue
        console.print(f"[green]ok[/green] {escape(r.path)} ({r.kind})", highlight=False)
        for line in r.understood:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
        for note in r.notes:
            console.print(f"  [yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


#: ``guard --help`` in panels, in the order a newcomer needs them (every command must be in one: a test checks)
HELP_PANELS: dict[str, tuple[str, ...]] = {
    "Start here": ("demo", "up", "analyze", "watch", "report"),
    "Send CI data to the guard": ("forward", "webhook", "ingest", "action", "directive", "fetcher"),
    "Run the guard's services": ("worker", "executor", "api", "api-keys", "topics", "export"),
    "Tune and check": ("config", "backtest", "unknowns", "learn", "flakiness", "bench", "schemas"),
}


def _arrange_help() -> None:
    """Commands grouped and ordered by :data:`HELP_PANELS`; help texts as plain text (a ``[name]`` in a
    help string is not Rich markup), single line breaks of a docstring not kept; flags without a type."""
    from typer.core import TyperArgument, TyperOption

    order = {name: (i, j) for i, names in enumerate(HELP_PANELS.values()) for j, name in enumerate(names)}
    panel = {name: title for title, names in HELP_PANELS.items() for name in names}

    def name_of(info: Any) -> str:
        if getattr(info, "name", None):
            return str(info.name)
        cb = getattr(info, "callback", None) or getattr(getattr(info, "typer_instance", None), "info", None)
        return str(getattr(cb, "__name__", "")).replace("_", "-")

    for infos in (app.registered_commands, app.registered_groups):
        for info in infos:
            info.rich_help_panel = panel.get(name_of(info), "Other")
        infos.sort(key=lambda info: order.get(name_of(info), (99, 0)))

    def reflow(text: str | None) -> str | None:
        """A docstring's paragraphs each on one line: Rich keeps a docstring's line breaks in the listing."""
        if not text:
            return text
        import inspect

        return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))

    def reflow_all(t: Any) -> None:
        for info in t.registered_commands:
            info.help = reflow(info.help or getattr(info.callback, "__doc__", None))
        for g in t.registered_groups:
            g.help = reflow(g.help or g.typer_instance.info.help)
            reflow_all(g.typer_instance)

    reflow_all(app)
    for cls in (TyperOption, TyperArgument):
        if getattr(cls.display_type_rich, "_guard_types", False):
            continue
        shown = cls.display_type_rich

        def display_type_rich(self: Any, ctx: Any, _shown: Any = shown) -> Any:
            if getattr(self, "is_flag", False):
                return None  # a flag takes no value: no "<bool>"
            out = _shown(self, ctx)
            if isinstance(out, str) and out.startswith("<list[") and out.endswith("]>"):
                return f"<{out[6:-2]}>..."  # repeatable: "<str>...", not "<list[str]>"
            return out

        display_type_rich._guard_types = True  # type: ignore[attr-defined]
        cls.display_type_rich = display_type_rich  # type: ignore[method-assign]


_arrange_help()


def main() -> None:
    from .brokers import BrokerError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokerError as exc:  # a broker that cannot start: the message says what to install or do
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
