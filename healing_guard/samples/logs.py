"""Log text builders for the bundled sample traffic.

Every line here is produced by this module from templates that imitate how the real tools print:
the CI platform's framing (GitHub Actions groups and timestamps, GitLab sections, Jenkins pipeline
steps, CircleCI steps), the ecosystem's noise (pip, npm, Maven, Gradle, go, cargo, cmake, BuildKit)
and, near the end of a failed job, the lines that give the cause away. Wording is drawn at random
from several variants per cause so the demo is not one string per category.

The builders are pure: they take a :class:`random.Random` and plain data and return lines.
"""

from __future__ import annotations

import dataclasses
import itertools
import string
import time
from collections.abc import Callable
from random import Random
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

_T = TypeVar("_T")

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits

ECOSYSTEMS = ("python", "node", "maven", "gradle", "go", "rust", "cmake", "docker")
COMPILED = frozenset({"node", "maven", "gradle", "go", "rust", "cmake"})


# --------------------------------------------------------------------------------------------- helpers


def hexs(rng: Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def alnum(rng: Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def banner(text: str, char: str = "=", width: int = 80) -> str:
    """pytest-style centred banner: ``===== 1 failed in 2.1s =====``."""
    text = f" {text} "
    left = max(2, (width - len(text)) // 2)
    right = max(2, width - len(text) - left)
    return char * left + text + char * right


def camel(words: list[str], upper_first: bool = False) -> str:
    out = "".join(w.capitalize() for w in words)
    return out if upper_first else out[:1].lower() + out[1:]


def fmt_kb(rng: Random) -> str:
    kb = rng.choice((3, 8, 12, 24, 48, 62, 96, 130, 220, 480, 900, 1400, 2600, 5800, 12400))
    kb = int(kb * (0.7 + rng.random() * 0.6))
    return f"{kb / 1024:.1f} MB" if kb >= 1024 else f"{kb} kB"


# ---------------------------------------------------------------------------------------- vocabulary

MODULES = (
    "auth", "billing", "cart", "invoice", "ledger", "cache", "router", "scheduler", "config", "session",
    "parser", "storage", "queue", "webhook", "export", "retry", "metrics", "search", "index", "tokens",
    "payments", "refunds", "orders", "users", "inventory", "pricing", "shipping", "notifier", "audit",
    "rates", "limits", "backoff", "ingest", "loader", "codec", "crypto", "compress", "manifest", "registry",
    "health", "ring", "crc", "uart", "flash", "timer", "gpio", "proxy", "tls", "upstream", "balancer",
)
VERBS = (
    "creates", "rejects", "handles", "parses", "retries", "expires", "serializes", "rounds", "paginates",
    "validates", "merges", "flushes", "evicts", "renders", "loads", "updates", "deletes", "encodes",
    "decodes", "streams", "resolves", "schedules", "cancels", "reconciles", "sorts", "caches", "splits",
)
OBJECTS = (
    "empty input", "expired token", "large payload", "unicode names", "concurrent writes", "missing header",
    "negative amount", "duplicate keys", "stale entries", "nested config", "zero quantity",
    "timezone offsets", "partial refund", "retry after", "invalid utf8", "long lines", "null fields",
    "default values", "sorted output", "utc midnight", "leap year", "counter rollover", "empty batch",
    "max size", "trailing slash", "idle connections", "slow consumer", "small buffer", "many shards",
)
JAVA_SUFFIX = ("Service", "Repository", "Handler", "Mapper", "Client", "Controller", "Validator")

PY_PKGS = (
    ("requests", "2.32.3"), ("urllib3", "2.2.2"), ("certifi", "2024.7.4"), ("idna", "3.7"),
    ("charset-normalizer", "3.3.2"), ("pydantic", "2.8.2"), ("pydantic-core", "2.20.1"), ("fastapi", "0.111.1"),
    ("starlette", "0.37.2"), ("sqlalchemy", "2.0.31"), ("psycopg", "3.2.1"), ("alembic", "1.13.2"),
    ("boto3", "1.34.144"), ("botocore", "1.34.144"), ("s3transfer", "0.10.2"), ("numpy", "1.26.4"),
    ("pandas", "2.2.2"), ("pyarrow", "16.1.0"), ("python-dateutil", "2.9.0.post0"), ("pytz", "2024.1"),
    ("pytest", "8.2.2"), ("pytest-cov", "5.0.0"), ("pytest-timeout", "2.3.1"), ("pytest-xdist", "3.6.1"),
    ("coverage", "7.6.0"), ("pluggy", "1.5.0"), ("packaging", "24.1"), ("attrs", "23.2.0"), ("redis", "5.0.7"),
    ("celery", "5.4.0"), ("kombu", "5.3.7"), ("httpx", "0.27.0"), ("anyio", "4.4.0"), ("sniffio", "1.3.1"),
    ("orjson", "3.10.6"), ("structlog", "24.2.0"), ("tenacity", "8.5.0"), ("jinja2", "3.1.4"),
    ("markupsafe", "2.1.5"), ("click", "8.1.7"), ("pyyaml", "6.0.1"), ("cryptography", "42.0.8"),
    ("cffi", "1.16.0"), ("pycparser", "2.22"), ("scikit-learn", "1.5.1"), ("scipy", "1.14.0"),
)
NPM_PKGS = (
    ("react", "18.3.1"), ("react-dom", "18.3.1"), ("typescript", "5.5.3"), ("vite", "5.3.4"),
    ("jest", "29.7.0"), ("ts-jest", "29.2.3"), ("eslint", "8.57.0"), ("prettier", "3.3.3"), ("lodash", "4.17.21"),
    ("axios", "1.7.2"), ("zod", "3.23.8"), ("date-fns", "3.6.0"), ("@tanstack/react-query", "5.51.1"),
    ("express", "4.19.2"), ("webpack", "5.93.0"), ("@babel/core", "7.24.9"), ("postcss", "8.4.39"),
    ("tailwindcss", "3.4.6"), ("redux", "5.0.1"), ("@testing-library/react", "16.0.0"), ("msw", "2.3.2"),
)
NPM_DEPRECATED = (
    ("inflight@1.0.6", "This module is not supported, and leaks memory. Do not use it."),
    ("glob@7.2.3", "Glob versions prior to v9 are no longer supported"),
    ("rimraf@3.0.2", "Rimraf versions prior to v4 are no longer supported"),
    ("abab@2.0.6", "Use your platform's native atob() and btoa() methods instead"),
    ("domexception@4.0.0", "Use your platform's native DOMException instead"),
    ("@humanwhocodes/config-array@0.11.14", "Use @eslint/config-array instead"),
)
MAVEN_ARTIFACTS = (
    ("org/springframework/boot", "spring-boot-starter-web", "3.3.2"),
    ("org/springframework", "spring-core", "6.1.11"), ("com/fasterxml/jackson/core", "jackson-databind", "2.17.2"),
    ("org/apache/commons", "commons-lang3", "3.14.0"), ("com/google/guava", "guava", "33.2.1-jre"),
    ("org/junit/jupiter", "junit-jupiter-api", "5.10.3"), ("org/mockito", "mockito-core", "5.12.0"),
    ("org/slf4j", "slf4j-api", "2.0.13"), ("ch/qos/logback", "logback-classic", "1.5.6"),
    ("org/postgresql", "postgresql", "42.7.3"), ("org/hibernate/orm", "hibernate-core", "6.5.2.Final"),
    ("io/micrometer", "micrometer-core", "1.13.2"), ("org/apache/kafka", "kafka-clients", "3.7.1"),
    ("org/assertj", "assertj-core", "3.26.3"), ("org/apache/maven/plugins", "maven-surefire-plugin", "3.2.5"),
    ("org/apache/maven/plugins", "maven-compiler-plugin", "3.13.0"), ("org/ow2/asm", "asm", "9.7"),
    ("net/bytebuddy", "byte-buddy", "1.14.18"), ("org/yaml", "snakeyaml", "2.2"),
)
GO_MODS = (
    ("github.com/stretchr/testify", "v1.9.0"), ("github.com/spf13/cobra", "v1.8.1"),
    ("github.com/spf13/pflag", "v1.0.5"), ("golang.org/x/sync", "v0.7.0"), ("golang.org/x/sys", "v0.22.0"),
    ("golang.org/x/net", "v0.27.0"), ("google.golang.org/grpc", "v1.65.0"), ("google.golang.org/protobuf", "v1.34.2"),
    ("github.com/prometheus/client_golang", "v1.19.1"), ("go.uber.org/zap", "v1.27.0"),
    ("gopkg.in/yaml.v3", "v3.0.1"), ("github.com/google/go-cmp", "v0.6.0"), ("github.com/hashicorp/go-retryablehttp", "v0.7.7"),
    ("github.com/aws/aws-sdk-go-v2", "v1.30.3"), ("github.com/rs/zerolog", "v1.33.0"), ("k8s.io/client-go", "v0.30.3"),
)
CRATES = (
    ("tokio", "1.38.1"), ("serde", "1.0.204"), ("serde_json", "1.0.120"), ("hyper", "1.4.1"), ("bytes", "1.6.1"),
    ("tracing", "0.1.40"), ("tracing-subscriber", "0.3.18"), ("anyhow", "1.0.86"), ("thiserror", "1.0.63"),
    ("rustls", "0.23.12"), ("futures", "0.3.30"), ("clap", "4.5.9"), ("regex", "1.10.5"), ("libc", "0.2.155"),
    ("proc-macro2", "1.0.86"), ("quote", "1.0.36"), ("syn", "2.0.72"), ("mio", "1.0.1"), ("http", "1.1.0"),
    ("tower", "0.4.13"), ("h2", "0.4.5"), ("parking_lot", "0.12.3"), ("smallvec", "1.13.2"), ("rand", "0.8.5"),
)
APT_PKGS = ("build-essential", "libssl-dev", "zlib1g-dev", "libffi-dev", "ca-certificates", "curl", "git",
            "pkg-config", "libpq-dev", "unzip", "ninja-build", "gcc-arm-none-eabi", "cmake", "python3-venv")


# ----------------------------------------------------------------------------------------- data types


class FastRandom(Random):
    """``randint`` and ``choice`` in one step each: log filler draws millions of them.

    Still fully determined by the seed; the values differ from :class:`random.Random`'s own methods.
    """

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq: SupportsLenAndGetItem[_T]) -> _T:
        return seq[int(self.random() * len(seq))]


@dataclasses.dataclass
class TestRun:
    """One test in the job: its parts as the tool prints them, and what happened to it."""

    __test__ = False
    test_id: str
    group: str  # file, class, package, module or describe block
    name: str
    outcome: str = "passed"  # passed / failed / error / skipped
    duration: float = 0.01
    message: str | None = None
    flaky: bool = False


@dataclasses.dataclass
class Step:
    title: str
    lines: list[str]
    cmd: str | None = None  # shell command
    action: str | None = None  # GitHub action (uses:)
    with_: dict[str, str] | None = None


@dataclasses.dataclass
class Cause:
    """How a job ends: the failing step's last output and the platform's verdict."""

    stage: str  # pre, checkout, setup, install, lint, build, test, post
    lines: list[str]
    exit_code: int | None = 1
    conclusion: str = "failure"
    title: str | None = None  # replaces the stage's usual step title
    cmd: str | None = None  # replaces the stage's usual command
    keep: float = 0.5  # share of the stage's normal output printed before the cause lines
    provider_tail: list[str] | None = None  # replaces the platform's usual failure trailer
    after: list[Step] | None = None  # if: always() steps after the failing one
    hang: bool = False  # long silence before the tail (timeouts, lost runners)
    #: the taxonomy's name for this ending when it is not the category asked for (a registry that has no
    #: such package is dependency_resolution, though it reads as a missing dependency)
    label: str | None = None


@dataclasses.dataclass
class Ctx:
    """What the builders need to know about the job."""

    rng: FastRandom
    provider: str
    owner: str
    repo: str
    eco: str
    job_name: str
    branch: str
    sha: str
    workdir: str
    runner_name: str
    image: str
    tool: str = ""  # e.g. "jest", "pytest"
    secrets: bool = False
    package: str = ""  # Go module path / Java package / crate name

    @property
    def full(self) -> str:
        return f"{self.owner}/{self.repo}"


# --------------------------------------------------------------------------------------- fake secrets


def fake_secret_lines(rng: Random, ctx: Ctx) -> list[str]:
    """Setup lines that leak made-up credentials, so redaction has something to do in the demo."""
    host = "gitlab.example.com" if ctx.provider == "gitlab" else "github.com"
    choices: list[Callable[[], str]] = [
        lambda: f"+ export GITHUB_TOKEN=ghp_{alnum(rng, 36)}",
        lambda: f"AWS_ACCESS_KEY_ID=AKIA{alnum(rng, 16, UPPER_DIGITS)}",
        lambda: f"aws_secret_access_key = {alnum(rng, 30)}/{alnum(rng, 9)}",
        lambda: f"Cloning into 'vendor/proto' from https://oauth2:glpat-{alnum(rng, 20)}@{host}/{ctx.owner}/proto.git",
        lambda: f"DATABASE_URL=postgres://app:hunter2{alnum(rng, 6)}@db.internal:5432/app",
        lambda: f"+ curl -fsS -u deploy:password=hunter2{alnum(rng, 4)} https://artifacts.example.com/api/ping",
        lambda: f"npm config set //registry.npmjs.org/:_authToken npm_{alnum(rng, 36)}",
        lambda: f"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{alnum(rng, 40)}.{alnum(rng, 43)}",
        lambda: f"SLACK_WEBHOOK=https://hooks.slack.com/services/T{alnum(rng, 8, UPPER_DIGITS)}/B{alnum(rng, 10, UPPER_DIGITS)}/{alnum(rng, 24)}",
        lambda: f"+ docker login -u ci-bot -p ghp_{alnum(rng, 36)} ghcr.io",
    ]
    k = 1 + (rng.random() < 0.4)
    return [rng.choice(choices)() for _ in range(k)]


# ---------------------------------------------------------------------------- ecosystem noise: install


def _py_install(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out: list[str] = []
    pkgs = list(PY_PKGS)
    rng.shuffle(pkgs)
    done: list[str] = []
    i = 0
    while len(out) < n - 3:
        name, ver = pkgs[i % len(pkgs)]
        i += 1
        r = rng.random()
        if r < 0.15:
            out.append(f"Requirement already satisfied: {name}>={ver.split('.')[0]}.0 in /usr/local/lib/python3.12/site-packages ({ver})")
            continue
        wheel = f"{name.replace('-', '_')}-{ver}-py3-none-any.whl" if r < 0.7 else \
            f"{name.replace('-', '_')}-{ver}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        size = fmt_kb(rng)
        out.append(f"Collecting {name}=={ver}" if rng.random() < 0.6 else f"Collecting {name}>={ver.rsplit('.', 1)[0]} (from -r requirements.txt (line {rng.randint(1, 40)}))")
        out.append(f"  Downloading {wheel} ({size})")
        if rng.random() < 0.5:
            out.append(f"     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ {size.split()[0]}/{size} {rng.randint(5, 90)}.{rng.randint(0, 9)} MB/s eta 0:00:00")
        done.append(f"{name}-{ver}")
    out.append("Installing collected packages: " + ", ".join(d.rsplit("-", 1)[0] for d in done[:30]))
    out.append("Successfully installed " + " ".join(done[:30]))
    return out


def _npm_install(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out: list[str] = []
    for pkg, why in rng.sample(NPM_DEPRECATED, k=rng.randint(1, 4)):
        out.append(f"npm WARN deprecated {pkg}: {why}")
    total = rng.randint(600, 1900)
    # long installs print lifecycle scripts and fetch logs (npm ci --loglevel http)
    while len(out) < n - 4:
        name, ver = rng.choice(NPM_PKGS)
        if rng.random() < 0.5:
            out.append(f"> {name}@{ver} postinstall")
            if rng.random() < 0.5:
                out.append("> node scripts/postinstall.js")
        else:
            out.append(f"npm http fetch GET 200 https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{ver}.tgz {rng.randint(20, 900)}ms (cache miss)")
    out.append("")
    out.append(f"added {total} packages, and audited {total + 1} packages in {rng.randint(8, 70)}s")
    out.append(f"{rng.randint(90, 300)} packages are looking for funding")
    out.append("  run `npm fund` for details")
    out.append("found 0 vulnerabilities" if rng.random() < 0.6 else f"{rng.randint(2, 9)} moderate severity vulnerabilities")
    return out


def _mvn_download(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out: list[str] = []
    while len(out) < n:
        grp, art, ver = rng.choice(MAVEN_ARTIFACTS)
        ext = rng.choice(("pom", "jar", "pom"))
        url = f"https://repo.maven.apache.org/maven2/{grp}/{art}/{ver}/{art}-{ver}.{ext}"
        out.append(f"[INFO] Downloading from central: {url}")
        out.append(f"[INFO] Downloaded from central: {url} ({rng.randint(1, 900)}.{rng.randint(0, 9)} kB at {rng.randint(40, 9000)} kB/s)")
    return out


def _gradle_download(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out = ["Downloading https://services.gradle.org/distributions/gradle-8.9-bin.zip",
           "............10%.............20%.............30%............40%.............50%............60%.............70%............80%.............90%............100%",
           "", "Welcome to Gradle 8.9!", "", "Starting a Gradle Daemon (subsequent builds will be faster)"]
    while len(out) < n:
        grp, art, ver = rng.choice(MAVEN_ARTIFACTS)
        out.append(f"Download https://repo.maven.apache.org/maven2/{grp}/{art}/{ver}/{art}-{ver}.{rng.choice(('pom', 'jar', 'module'))}, took {rng.randint(20, 900)} ms")
    return out


def _go_download(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    return [f"go: downloading {m} {v}" for m, v in (rng.choice(GO_MODS) for _ in range(max(1, n)))]


def _cargo_download(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out = ["    Updating crates.io index"]
    while len(out) < n - 1:
        c, v = rng.choice(CRATES)
        out.append(f"  Downloaded {c} v{v}")
    out.append(f"  Downloaded {rng.randint(80, 300)} crates ({rng.randint(8, 60)}.{rng.randint(0, 9)} MB) in {rng.randint(1, 9)}.{rng.randint(10, 99)}s")
    return out


def _apt_install(ctx: Ctx, n: int) -> list[str]:
    rng = ctx.rng
    out = ["Hit:1 http://archive.ubuntu.com/ubuntu jammy InRelease",
           "Get:2 http://archive.ubuntu.com/ubuntu jammy-updates InRelease [128 kB]",
           "Get:3 http://security.ubuntu.com/ubuntu jammy-security InRelease [129 kB]",
           f"Fetched {rng.randint(1, 30)}.{rng.randint(0, 9)} MB in {rng.randint(1, 9)}s ({rng.randint(1, 9)} MB/s)",
           "Reading package lists...", "Building dependency tree...", "Reading state information..."]
    i = 4
    while len(out) < n:
        p = rng.choice(APT_PKGS)
        out.append(f"Get:{i} http://archive.ubuntu.com/ubuntu jammy/main amd64 {p} amd64 {rng.randint(1, 12)}.{rng.randint(0, 9)}-{rng.randint(1, 9)} [{rng.randint(20, 900)} kB]")
        if rng.random() < 0.4:
            out.append(f"Setting up {p} ({rng.randint(1, 12)}.{rng.randint(0, 9)}-{rng.randint(1, 9)}) ...")
        i += 1
    return out


def install_step(ctx: Ctx, n: int) -> Step:
    eco = ctx.eco
    n = max(3, n)
    if eco in ("python", "docker"):
        cmd = ctx.rng.choice(("pip install -r requirements.txt -r requirements-dev.txt",
                              "python -m pip install -e '.[test]'", "pip install --upgrade pip && pip install -r requirements/ci.txt"))
        return Step("Install dependencies", _py_install(ctx, n), cmd=cmd)
    if eco == "node":
        return Step("Install dependencies", _npm_install(ctx, n), cmd="npm ci")
    if eco == "maven":
        return Step("Resolve dependencies", _mvn_download(ctx, n), cmd="mvn -B -ntp dependency:go-offline")
    if eco == "gradle":
        return Step("Resolve dependencies", _gradle_download(ctx, n), cmd="./gradlew dependencies --no-daemon -q")
    if eco == "go":
        return Step("Download modules", _go_download(ctx, n), cmd="go mod download -x" if ctx.rng.random() < 0.2 else "go mod download")
    if eco == "rust":
        return Step("Fetch crates", _cargo_download(ctx, n), cmd="cargo fetch --locked")
    return Step("Install toolchain", _apt_install(ctx, n), cmd=f"sudo apt-get update && sudo apt-get install -y {' '.join(ctx.rng.sample(APT_PKGS, 4))}")


# ------------------------------------------------------------------------------ ecosystem noise: build


def _java_file(ctx: Ctx) -> tuple[str, str]:
    mod = ctx.rng.choice(MODULES)
    cls = mod.capitalize() + ctx.rng.choice(JAVA_SUFFIX)
    path = f"src/main/java/{ctx.package.replace('.', '/')}/{mod}/{cls}.java"
    return path, cls


def build_step(ctx: Ctx, n: int) -> Step | None:
    rng = ctx.rng
    eco = ctx.eco
    out: list[str] = []
    if eco == "node":
        out += [f"> {ctx.repo}@{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)} build", "> tsc -p tsconfig.build.json && vite build", "",
                "vite v5.3.4 building for production...", "transforming..."]
        while len(out) < n - 3:
            mod = rng.choice(MODULES)
            out.append(f"dist/assets/{mod}-{hexs(rng, 8)}.js   {rng.randint(1, 400)}.{rng.randint(10, 99)} kB │ gzip: {rng.randint(1, 120)}.{rng.randint(10, 99)} kB")
        out += [f"✓ {rng.randint(300, 2500)} modules transformed.", f"✓ built in {rng.randint(4, 60)}.{rng.randint(10, 99)}s"]
        return Step("Build", out, cmd="npm run build")
    if eco == "maven":
        art = ctx.repo
        out += ["[INFO] Scanning for projects...", "[INFO] ", f"[INFO] -------------------< {ctx.package}:{art} >-------------------",
                f"[INFO] Building {art} 2.{rng.randint(0, 9)}.0-SNAPSHOT", "[INFO]   from pom.xml",
                "[INFO] --------------------------------[ jar ]---------------------------------",
                f"[INFO] --- resources:3.3.1:resources (default-resources) @ {art} ---",
                f"[INFO] Copying {rng.randint(2, 40)} resources from src/main/resources to target/classes",
                f"[INFO] --- compiler:3.13.0:compile (default-compile) @ {art} ---",
                "[INFO] Recompiling the module because of changed source code.",
                f"[INFO] Compiling {rng.randint(80, 900)} source files with javac [debug release 17] to target/classes"]
        while len(out) < n - 6:
            path, cls = _java_file(ctx)
            r = rng.random()
            if r < 0.3:
                out.append(f"[WARNING] /{ctx.workdir}/{path}:[{rng.randint(10, 400)},{rng.randint(5, 40)}] {rng.choice(('unchecked conversion', 'deprecated API usage: Date(int,int,int)', 'redundant cast to java.lang.String'))}")
            elif r < 0.6:
                out.append(f"[INFO] --- {rng.choice(('jacoco:0.8.12:prepare-agent', 'resources:3.3.1:testResources', 'compiler:3.13.0:testCompile', 'enforcer:3.5.0:enforce', 'spotless:2.43.0:check'))} (default) @ {art} ---")
            else:
                out.append(f"[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/{'/'.join(rng.choice(MAVEN_ARTIFACTS))}.jar ({rng.randint(3, 900)} kB at {rng.randint(200, 9000)} kB/s)")
        out += [f"[INFO] --- jar:3.4.1:jar (default-jar) @ {art} ---", f"[INFO] Building jar: {ctx.workdir}/target/{art}-2.4.0-SNAPSHOT.jar",
                "[INFO] ------------------------------------------------------------------------", "[INFO] BUILD SUCCESS",
                "[INFO] ------------------------------------------------------------------------",
                f"[INFO] Total time:  {rng.randint(20, 59)}.{rng.randint(100, 999)} s"]
        return Step("Build", out, cmd="mvn -B -ntp -DskipTests package")
    if eco == "gradle":
        tasks = [":compileJava", ":processResources", ":classes", ":jar", ":compileTestJava", ":processTestResources", ":testClasses"]
        for t in tasks:
            out.append(f"> Task {t}")
            while rng.random() < 0.3 and len(out) < n:
                path, _ = _java_file(ctx)
                out.append(f"{ctx.workdir}/{path}:{rng.randint(10, 300)}: warning: [deprecation] {rng.choice(('getId()', 'toDate()', 'newInstance()'))} in {rng.choice(('Entity', 'Instant', 'Class'))} has been deprecated")
        while len(out) < n - 2:
            path, _ = _java_file(ctx)
            out.append(f"Note: {path} uses unchecked or unsafe operations.")
            out.append("Note: Recompile with -Xlint:unchecked for details.")
        out += ["", f"BUILD SUCCESSFUL in {rng.randint(20, 200)}s", f"{rng.randint(6, 30)} actionable tasks: {rng.randint(6, 30)} executed"]
        return Step("Build", out, cmd="./gradlew assemble testClasses --no-daemon")
    if eco == "go":
        out = ["go build -v ./..."] if False else []
        while len(out) < n:
            m, _ = rng.choice(GO_MODS)
            out.append(m if rng.random() < 0.5 else f"{ctx.package}/internal/{rng.choice(MODULES)}")
        return Step("Build", out, cmd="go build -v ./...")
    if eco == "rust":
        while len(out) < n - 1:
            c, v = rng.choice(CRATES)
            out.append(f"   Compiling {c} v{v}")
            if rng.random() < 0.03:
                out.append("warning: unused import: `std::collections::HashMap`")
                out.append(f"  --> src/{rng.choice(MODULES)}.rs:{rng.randint(1, 30)}:5")
        out.append(f"   Compiling {ctx.package} v0.{rng.randint(1, 9)}.0 ({ctx.workdir})")
        out.append(f"    Finished `dev` profile [unoptimized + debuginfo] target(s) in {rng.randint(20, 240)}.{rng.randint(10, 99)}s")
        return Step("Build", out, cmd="cargo build --locked --all-targets")
    if eco == "cmake":
        out += ["-- The C compiler identification is GNU 12.2.0", "-- The CXX compiler identification is GNU 12.2.0",
                "-- Detecting C compiler ABI info", "-- Detecting C compiler ABI info - done",
                "-- Check for working C compiler: /usr/bin/cc - skipped", "-- Detecting C compile features",
                "-- Detecting C compile features - done", "-- Found OpenSSL: /usr/lib/x86_64-linux-gnu/libcrypto.so (found version \"3.0.11\")",
                "-- Configuring done (0.8s)", "-- Generating done (0.1s)", f"-- Build files have been written to: {ctx.workdir}/build"]
        k = max(10, n - len(out) - 2)
        for i in range(k):
            pct = int(100 * (i + 1) / (k + 1))
            mod = rng.choice(MODULES)
            out.append(f"[{pct:3d}%] Building C object src/CMakeFiles/{ctx.repo}.dir/{mod}/{mod}_{rng.randint(1, 40)}.c.o")
        out.append(f"[100%] Linking C executable {ctx.repo}")
        out.append(f"[100%] Built target {ctx.repo}")
        return Step("Build", out, cmd="cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j8")
    if eco == "docker":
        return Step("Build image", docker_build_lines(ctx, n), cmd=f"docker build -t {image_ref(ctx)} .")
    return None  # python: nothing to compile


def image_ref(ctx: Ctx) -> str:
    reg = {"github": "ghcr.io", "gitlab": "registry.gitlab.com"}.get(ctx.provider, "registry.example.com")
    return f"{reg}/{ctx.owner}/{ctx.repo}:{ctx.sha[:12]}"


def docker_build_lines(ctx: Ctx, n: int, stop_at: int | None = None) -> list[str]:
    rng = ctx.rng
    base = rng.choice(("python:3.12-slim", "node:20-bookworm-slim", "eclipse-temurin:17-jre", "golang:1.22-bookworm", "debian:bookworm-slim"))
    out = ['#0 building with "default" instance using docker driver', "",
           "#1 [internal] load build definition from Dockerfile", f"#1 transferring dockerfile: {rng.randint(1, 4)}.{rng.randint(10, 99)}kB done", "#1 DONE 0.0s", "",
           f"#2 [internal] load metadata for docker.io/library/{base}", f"#2 DONE {rng.randint(0, 3)}.{rng.randint(1, 9)}s", "",
           "#3 [internal] load .dockerignore", "#3 transferring context: 2B done", "#3 DONE 0.0s", "",
           f"#4 [1/6] FROM docker.io/library/{base}@sha256:{hexs(rng, 64)}"]
    for _ in range(rng.randint(2, 5)):
        mb = rng.randint(1, 60)
        out.append(f"#4 sha256:{hexs(rng, 64)} {mb}.{rng.randint(10, 99)}MB / {mb}.{rng.randint(10, 99)}MB {rng.randint(0, 4)}.{rng.randint(1, 9)}s done")
    out += [f"#4 DONE {rng.randint(2, 9)}.{rng.randint(1, 9)}s", "",
            "#5 [2/6] RUN apt-get update && apt-get install -y --no-install-recommends " + " ".join(rng.sample(APT_PKGS, 3))]
    t = 0.3
    while len(out) < n - 12:
        t += rng.random() * 0.4
        p = rng.choice(APT_PKGS)
        out.append(f"#5 {t:.3f} Get:{len(out)} http://deb.debian.org/debian bookworm/main amd64 {p} amd64 {rng.randint(1, 12)}.{rng.randint(0, 9)} [{rng.randint(20, 900)} kB]")
    out += [f"#5 DONE {t + 1:.1f}s", "", "#6 [3/6] WORKDIR /app", "#6 DONE 0.0s", "", "#7 [4/6] COPY . .", "#7 DONE 0.2s", "",
            "#8 exporting to image", f"#8 exporting layers {rng.randint(1, 9)}.{rng.randint(1, 9)}s done",
            f"#8 writing image sha256:{hexs(rng, 64)} done", f"#8 naming to {image_ref(ctx)} done", "#8 DONE 3.1s"]
    return out


def docker_push_lines(ctx: Ctx) -> list[str]:
    rng = ctx.rng
    ref = image_ref(ctx)
    out = [f"The push refers to repository [{ref.rsplit(':', 1)[0]}]"]
    layers = [hexs(rng, 12) for _ in range(rng.randint(3, 7))]
    out += [f"{layer}: Preparing" for layer in layers]
    out += [f"{layer}: {'Layer already exists' if rng.random() < 0.5 else 'Pushed'}" for layer in layers]
    out.append(f"{ref.rsplit(':', 1)[1]}: digest: sha256:{hexs(rng, 64)} size: {rng.randint(900, 3000)}")
    return out


# ------------------------------------------------------------------------------ ecosystem noise: lint


def lint_step(ctx: Ctx) -> Step:
    rng = ctx.rng
    eco = ctx.eco
    n_files = rng.randint(40, 400)
    if eco in ("python", "docker"):
        tool = rng.choice(("ruff", "flake8", "black"))
        if tool == "ruff":
            return Step("Lint", ["All checks passed!"], cmd="ruff check .")
        if tool == "flake8":
            return Step("Lint", [], cmd="flake8 src tests")
        return Step("Lint", ["All done! ✨ 🍰 ✨", f"{n_files} files would be left unchanged."], cmd="black --check .")
    if eco == "node":
        return Step("Lint", [f"> {ctx.repo}@1.0.0 lint", "> eslint . --max-warnings=0", ""], cmd="npm run lint")
    if eco == "maven":
        return Step("Checkstyle", ["[INFO] --- checkstyle:3.4.0:check (validate) @ %s ---" % ctx.repo,
                                   "[INFO] You have 0 Checkstyle violations."], cmd="mvn -B -ntp checkstyle:check")
    if eco == "gradle":
        return Step("Spotless", ["> Task :spotlessJava", "> Task :spotlessJavaCheck", "> Task :spotlessCheck", "",
                                 f"BUILD SUCCESSFUL in {rng.randint(5, 40)}s"], cmd="./gradlew spotlessCheck --no-daemon")
    if eco == "go":
        return Step("golangci-lint", [f"level=info msg=\"[runner] linters took {rng.randint(1, 30)}.{rng.randint(100, 999)}s with stages: goanalysis_metalinter\"",
                                      f"level=info msg=\"File cache stats: {n_files} entries of total size {rng.randint(1, 9)}.{rng.randint(0, 9)}MiB\""],
                    cmd="golangci-lint run --timeout 5m")
    if eco == "rust":
        return Step("Clippy", [f"    Checking {ctx.package} v0.4.0 ({ctx.workdir})",
                               f"    Finished `dev` profile [unoptimized + debuginfo] target(s) in {rng.randint(5, 60)}.{rng.randint(10, 99)}s"],
                    cmd="cargo clippy --all-targets -- -D warnings")
    return Step("clang-format", [], cmd="clang-format --dry-run --Werror src/**/*.c include/**/*.h")


# ------------------------------------------------------------------------------ ecosystem noise: tests


def _group_key(t: TestRun) -> str:
    return t.group


PY_FAILS = (
    "AssertionError: assert {a} == {b}", "AssertionError: assert 'pending' == 'settled'",
    "KeyError: 'currency'", "AssertionError: expected call not found.", "assert None is not None",
    "AssertionError: assert {a} == {b}\n +  where {a} = len([...])", "ValueError: invalid literal for int() with base 10: ''",
    "TimeoutError: lock not acquired within 2.0s", "AssertionError: Lists differ: ['a', 'b'] != ['b', 'a']",
)
JS_FAILS = ("expect(received).toBe(expected) // Object.is equality", "expect(received).toEqual(expected) // deep equality",
            "expect(jest.fn()).toHaveBeenCalledTimes(expected)", "TypeError: Cannot read properties of undefined (reading 'id')",
            "expect(received).toHaveLength(expected)")
JAVA_FAILS = ("org.opentest4j.AssertionFailedError: expected: <{b}> but was: <{a}>",
              "org.opentest4j.AssertionFailedError: expected: <true> but was: <false>",
              "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null",
              "org.mockito.exceptions.verification.TooManyActualInvocations: repository.save(<any>); Wanted 1 time but was 2",
              "java.lang.AssertionError: \nExpecting actual:\n  {a}\nto be equal to:\n  {b}")
GO_FAILS = ("expected {b} entries, got {a}", "unexpected error: context deadline exceeded",
            "Error Trace:\tcache_test.go:{ln}\n\tError:      \tNot equal: \n\t            \texpected: {b}\n\t            \tactual  : {a}",
            "got status {a}, want {b}", "mismatch (-want +got):\n\t  int(\n\t- \t{b},\n\t+ \t{a},\n\t  )")
RUST_FAILS = ("assertion `left == right` failed\n  left: {a}\n right: {b}", "called `Result::unwrap()` on an `Err` value: Timeout",
              "assertion failed: buf.is_empty()", "expected Ready, got Pending")
C_FAILS = ("Assertion `crc == 0x{h}' failed.", "expected {b}, got {a}", "FAIL: ring_count(&r) == {b} (got {a})")


def failure_message(rng: Random, eco: str) -> str:
    pool = {"python": PY_FAILS, "docker": PY_FAILS, "node": JS_FAILS, "maven": JAVA_FAILS, "gradle": JAVA_FAILS,
            "go": GO_FAILS, "rust": RUST_FAILS}.get(eco, C_FAILS)
    a = rng.randint(0, 12)
    b = a + rng.randint(1, 3)
    return rng.choice(pool).format(a=a, b=b, ln=rng.randint(20, 300), h=hexs(rng, 8))


_POOLS: dict[str, list[TestRun]] = {}
_POOL_SIZE = 9000


def _name_pool(eco: str) -> list[TestRun]:
    """A fixed pool of untracked, always-passing tests per ecosystem (a real suite runs the same tests every time).

    Built by walking module x verb x object with co-prime strides, so names are unique without a random draw.
    """
    pool = _POOLS.get(eco)
    if pool is None:
        pool = []
        r = Random(f"durations-{eco}")
        nm, nv, no = len(MODULES), len(VERBS), len(OBJECTS)
        for i in range(_POOL_SIZE):
            mod, verb, obj = MODULES[i % nm], VERBS[(i * 7) % nv], OBJECTS[(i * 13) % no]
            words = [verb] + obj.split()
            if eco in ("python", "docker"):
                g, n = f"tests/{'smoke/' if eco == 'docker' else ''}test_{mod}.py", "test_" + "_".join(words)
            elif eco == "node":
                g, n = mod.capitalize(), " ".join(words)
            elif eco in ("maven", "gradle"):
                g, n = f"{mod.capitalize()}{JAVA_SUFFIX[i % len(JAVA_SUFFIX)]}Test", camel(words)
            elif eco == "go":
                g, n = f"internal/{mod}", "Test" + camel([mod] + words, True)
            elif eco == "rust":
                g, n = mod, "_".join(words)
            else:
                g, n = mod, f"{mod}_{'_'.join(words)}"
            dur = round(0.001 + r.random() * (0.03 if r.random() < 0.85 else 0.6), 3)
            pool.append(TestRun("", g, n, "passed", dur))
        _POOLS[eco] = pool
    return pool


def test_lines(ctx: Ctx, tests: list[TestRun], n: int) -> tuple[list[str], list[str]]:
    """The test runner's output: (progress lines, failure details + summary).

    ``tests`` are the tracked tests; the tool also runs ``n``-ish untracked ones that always pass.
    Failing tracked tests print their id in the form the tool uses, so the log names them.
    """
    rng = ctx.rng
    eco = ctx.eco
    n_extra = max(0, n - len(tests))
    pool = _name_pool(eco)
    n_extra = min(n_extra, len(pool))
    off = rng.randrange(len(pool) - n_extra + 1)
    allt = pool[off:off + n_extra]
    for t in tests:
        allt.insert(rng.randint(0, len(allt)), t)
    allt.sort(key=_group_key)
    for t in tests:
        if t.outcome in ("failed", "error") and t.message is None:
            t.message = failure_message(rng, eco)
    failed = [t for t in tests if t.outcome in ("failed", "error")]
    n_pass = sum(1 for t in allt if t.outcome == "passed")
    n_skip = sum(1 for t in allt if t.outcome == "skipped")
    total_s = sum(t.duration for t in allt) + rng.random() * 5
    fn = {"python": _pytest, "docker": _pytest, "node": _jest, "maven": _surefire, "gradle": _gradle_test,
          "go": _gotest, "rust": _cargotest}.get(eco, _ctest)
    return fn(ctx, allt, failed, n_pass, n_skip, total_s)


def _pytest(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    head = [banner("test session starts"),
            f"platform linux -- Python 3.12.{rng.randint(1, 7)}, pytest-8.2.2, pluggy-1.5.0",
            "cachedir: .pytest_cache", f"rootdir: {ctx.workdir}", "configfile: pyproject.toml",
            f"plugins: cov-5.0.0, timeout-2.3.1{', xdist-3.6.1' if rng.random() < 0.3 else ''}",
            f"collected {len(allt)} items", ""]
    verbose = rng.random() < 0.7
    if verbose:
        total = len(allt)
        for i, t in enumerate(allt):
            status = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR", "skipped": "SKIPPED"}[t.outcome]
            left = f"{t.group}::{t.name} {status}"
            head.append(f"{left:<72} [{int(100 * (i + 1) / total):3d}%]")
    else:
        by_file: dict[str, list[str]] = {}
        for t in allt:
            by_file.setdefault(t.group, []).append({"passed": ".", "failed": "F", "error": "E", "skipped": "s"}[t.outcome])
        done = 0
        total = len(allt)
        for f, marks in by_file.items():
            done += len(marks)
            for j in range(0, len(marks), 60):
                s = f"{f} " + "".join(marks[j:j + 60]) if j == 0 else "".join(marks[j:j + 60])
                head.append(f"{s:<72} [{int(100 * done / total):3d}%]")
    tail: list[str] = [""]
    if failed:
        tail.append(banner("FAILURES"))
        for t in failed:
            msg = t.message or "AssertionError"
            tail.append(banner(t.name, "_"))
            tail.append("")
            tail.append(f"    def {t.name}({rng.choice(('client', 'db_session', 'tmp_path', ''))}):")
            tail.append(f"        {rng.choice(('result = service.run(payload)', 'resp = client.post(url, json=body)', 'items = repo.list(limit=50)'))}")
            tail.append(f">       {rng.choice(('assert result.status == expected', 'assert resp.status_code == 200', 'assert len(items) == expected'))}")
            for ml in msg.split("\n"):
                tail.append(f"E       {ml}")
            tail.append("")
            tail.append(f"{t.group}:{rng.randint(12, 400)}: {msg.split(':')[0].split()[0]}")
        tail.append(banner("short test summary info"))
        for t in failed:
            first = (t.message or "AssertionError").split("\n")[0]
            tail.append(f"FAILED {t.group}::{t.name} - {first}")
        parts = [f"{len(failed)} failed", f"{n_pass} passed"] + ([f"{n_skip} skipped"] if n_skip else [])
    else:
        parts = [f"{n_pass} passed"] + ([f"{n_skip} skipped"] if n_skip else [])
    tail.append(banner(f"{', '.join(parts)} in {total_s:.2f}s"))
    return head, tail


def _jest(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    suites: dict[str, list[TestRun]] = {}
    for t in allt:
        suites.setdefault(t.group, []).append(t)
    head: list[str] = []
    n_fail_suites = 0
    files = {}
    for g, ts in suites.items():
        path = f"src/{g.lower()}/{g}.test.tsx"
        files[g] = path
        bad = any(t.outcome in ("failed", "error") for t in ts)
        n_fail_suites += bad
        head.append(f"{'FAIL' if bad else 'PASS'} {path}{f' ({rng.randint(1, 12)}.{rng.randint(100, 999)} s)' if rng.random() < 0.4 else ''}")
        head.append(f"  {g}")
        for t in ts:
            mark = {"passed": "✓", "failed": "✕", "error": "✕", "skipped": "○"}[t.outcome]
            head.append(f"    {mark} {t.name}{'' if t.outcome == 'skipped' else f' ({max(1, int(t.duration * 1000))} ms)'}")
        for t in ts:
            if t.outcome in ("failed", "error"):
                ln = rng.randint(20, 200)
                head += ["", f"  ● {t.test_id}", "", f"    {(t.message or '').splitlines()[0]}", "",
                         f"    Expected: {rng.randint(0, 9)}", f"    Received: {rng.randint(10, 20)}", "",
                         f"      {ln - 1} |     const result = render{g}(props);",
                         f"    > {ln} |     expect(result.total).toBe(expected);", "         |                          ^", "",
                         f"      at Object.<anonymous> ({path}:{ln}:26)", ""]
    n_fail = len(failed)
    tail = ["", "Summary of all failing tests"] if failed else []
    for t in failed:
        tail += [f"FAIL {files.get(t.group, 'src/unknown.test.tsx')}", f"  ● {t.test_id}", "", f"    {(t.message or '').splitlines()[0]}", ""]
    ns = len(suites)
    tail.append("")
    tail.append(f"Test Suites: {f'{n_fail_suites} failed, ' if n_fail_suites else ''}{ns - n_fail_suites} passed, {ns} total")
    tail.append(f"Tests:       {f'{n_fail} failed, ' if n_fail else ''}{f'{n_skip} skipped, ' if n_skip else ''}{n_pass} passed, {len(allt)} total")
    tail += ["Snapshots:   0 total", f"Time:        {total_s:.3f} s", "Ran all test suites."]
    return head, tail


def _surefire(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    classes: dict[str, list[TestRun]] = {}
    for t in allt:
        g = t.group if "." in t.group else f"{ctx.package}.{t.group}"
        classes.setdefault(g, []).append(t)
    head = [f"[INFO] --- surefire:3.2.5:test (default-test) @ {ctx.repo} ---",
            "[INFO] Using auto detected provider org.apache.maven.surefire.junitplatform.JUnitPlatformProvider",
            "[INFO] ", "[INFO] -------------------------------------------------------", "[INFO]  T E S T S",
            "[INFO] -------------------------------------------------------"]
    for cls, ts in classes.items():
        head.append(f"[INFO] Running {cls}")
        nf = sum(t.outcome == "failed" for t in ts)
        ne = sum(t.outcome == "error" for t in ts)
        nsk = sum(t.outcome == "skipped" for t in ts)
        el = sum(t.duration for t in ts)
        if nf or ne:
            head.append(f"[ERROR] Tests run: {len(ts)}, Failures: {nf}, Errors: {ne}, Skipped: {nsk}, Time elapsed: {el:.3f} s <<< FAILURE! -- in {cls}")
            for t in ts:
                if t.outcome in ("failed", "error"):
                    head.append(f"[ERROR] {cls}.{t.name} -- Time elapsed: {t.duration:.3f} s <<< {'FAILURE' if t.outcome == 'failed' else 'ERROR'}!")
                    head += (t.message or "").splitlines()
                    head.append("\tat org.junit.jupiter.api.AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)")
                    head.append(f"\tat {cls}.{t.name}({cls.rsplit('.', 1)[1]}.java:{rng.randint(20, 300)})")
                    head.append("\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)")
                    head.append("")
        else:
            head.append(f"[INFO] Tests run: {len(ts)}, Failures: 0, Errors: 0, Skipped: {nsk}, Time elapsed: {el:.3f} s -- in {cls}")
    nf = sum(t.outcome == "failed" for t in failed)
    ne = len(failed) - nf
    tail = ["[INFO] ", "[INFO] Results:", "[INFO] "]
    if failed:
        if nf:
            tail.append("[ERROR] Failures: ")
            for t in failed:
                if t.outcome == "failed":
                    tail.append(f"[ERROR]   {t.group.rsplit('.', 1)[-1]}.{t.name}:{rng.randint(20, 300)} {(t.message or '').splitlines()[0].split(': ', 1)[-1]}")
        if ne:
            tail.append("[ERROR] Errors: ")
            for t in failed:
                if t.outcome == "error":
                    tail.append(f"[ERROR]   {t.group.rsplit('.', 1)[-1]}.{t.name} » {(t.message or '').splitlines()[0]}")
        tail.append("[INFO] ")
        tail.append(f"[ERROR] Tests run: {len(allt)}, Failures: {nf}, Errors: {ne}, Skipped: {n_skip}")
        tail += ["[INFO] ", "[INFO] ------------------------------------------------------------------------", "[INFO] BUILD FAILURE",
                 "[INFO] ------------------------------------------------------------------------",
                 f"[INFO] Total time:  {int(total_s // 60):02d}:{int(total_s % 60):02d} min",
                 "[INFO] ------------------------------------------------------------------------",
                 f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-surefire-plugin:3.2.5:test (default-test) on project {ctx.repo}: There are test failures.",
                 "[ERROR] ", f"[ERROR] Please refer to {ctx.workdir}/target/surefire-reports for the individual test results.",
                 "[ERROR] -> [Help 1]"]
    else:
        tail.append(f"[INFO] Tests run: {len(allt)}, Failures: 0, Errors: 0, Skipped: {n_skip}")
        tail += ["[INFO] ", "[INFO] ------------------------------------------------------------------------", "[INFO] BUILD SUCCESS",
                 "[INFO] ------------------------------------------------------------------------",
                 f"[INFO] Total time:  {int(total_s // 60):02d}:{int(total_s % 60):02d} min"]
    return head, tail


def _gradle_test(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    head = ["> Task :compileJava UP-TO-DATE", "> Task :classes UP-TO-DATE", "> Task :compileTestJava UP-TO-DATE", "> Task :test"]
    # Gradle prints nothing per passing test; the forwarder still ships the daemon chatter
    k = len(allt) // 2
    for _ in range(k):
        head.append("OpenJDK 64-Bit Server VM warning: Sharing is only supported for boot loader classes because bootstrap classpath has been appended" if rng.random() < 0.05 else
                    f"{rng.choice(MODULES)}-worker-{rng.randint(1, 8)} INFO  c.a.{rng.choice(MODULES)}.{rng.choice(MODULES).capitalize()}{rng.choice(JAVA_SUFFIX)} - {rng.choice(('started', 'flushed batch', 'opened connection', 'closed connection', 'cache warm'))} in {rng.randint(1, 400)} ms")
    tail: list[str] = []
    for t in failed:
        cls = t.group
        tail += ["", f"{cls} > {t.name}() FAILED", f"    {(t.message or '').splitlines()[0].split(':')[0]} at {cls.rsplit('.', 1)[-1]}.java:{rng.randint(20, 300)}"]
    if failed:
        tail += ["", f"{len(allt)} tests completed, {len(failed)} failed{f', {n_skip} skipped' if n_skip else ''}", "", "> Task :test FAILED", "",
                 "FAILURE: Build failed with an exception.", "", "* What went wrong:", "Execution failed for task ':test'.",
                 f"> There were failing tests. See the report at: file://{ctx.workdir}/build/reports/tests/test/index.html", "",
                 "* Try:", "> Run with --scan to get full insights.", "", f"BUILD FAILED in {int(total_s)}s",
                 f"{rng.randint(4, 12)} actionable tasks: {rng.randint(1, 4)} executed, {rng.randint(3, 8)} up-to-date"]
    else:
        tail += ["", f"BUILD SUCCESSFUL in {int(total_s)}s", f"{rng.randint(4, 12)} actionable tasks: {rng.randint(1, 4)} executed, {rng.randint(3, 8)} up-to-date"]
    return head, tail


def _gotest(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    pkgs: dict[str, list[TestRun]] = {}
    for t in allt:
        pkgs.setdefault(t.group, []).append(t)
    head: list[str] = []
    tail: list[str] = []
    for p, ts in pkgs.items():
        bad = False
        for t in ts:
            head.append(f"=== RUN   {t.name}")
            if t.outcome in ("failed", "error"):
                bad = True
                for ml in (t.message or "").splitlines():
                    head.append(f"    {rng.choice(MODULES)}_test.go:{rng.randint(20, 300)}: {ml}")
                head.append(f"--- FAIL: {t.name} ({t.duration:.2f}s)")
            elif t.outcome == "skipped":
                head.append(f"--- SKIP: {t.name} ({t.duration:.2f}s)")
            else:
                head.append(f"--- PASS: {t.name} ({t.duration:.2f}s)")
        el = sum(t.duration for t in ts) + rng.random()
        if bad:
            head += ["FAIL", f"FAIL\t{ctx.package}/{p}\t{el:.3f}s"]
        else:
            head.append(f"ok  \t{ctx.package}/{p}\t{el:.3f}s")
    if failed:
        tail.append("FAIL")
    return head, tail


def _cargotest(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    head = [f"    Finished `test` profile [unoptimized + debuginfo] target(s) in {rng.randint(1, 90)}.{rng.randint(10, 99)}s",
            f"     Running unittests src/lib.rs (target/debug/deps/{ctx.package}-{hexs(rng, 16)})", "", f"running {len(allt)} tests"]
    for t in allt:
        tid = t.test_id or f"{t.group}::tests::{t.name}"
        head.append(f"test {tid} ... {({'passed': 'ok', 'skipped': 'ignored'}).get(t.outcome, 'FAILED')}")
    tail: list[str] = [""]
    if failed:
        tail += ["failures:", ""]
        for t in failed:
            tail.append(f"---- {t.test_id} stdout ----")
            tail.append(f"thread '{t.test_id}' panicked at src/{t.group}.rs:{rng.randint(20, 400)}:{rng.randint(5, 30)}:")
            tail += (t.message or "").splitlines()
            tail += ["note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace", ""]
        tail += ["", "failures:"] + [f"    {t.test_id}" for t in failed] + [""]
        tail.append(f"test result: FAILED. {n_pass} passed; {len(failed)} failed; {n_skip} ignored; 0 measured; 0 filtered out; finished in {total_s:.2f}s")
        tail += ["", "error: test failed, to rerun pass `--lib`"]
    else:
        tail.append(f"test result: ok. {n_pass} passed; 0 failed; {n_skip} ignored; 0 measured; 0 filtered out; finished in {total_s:.2f}s")
    return head, tail


def _ctest(ctx: Ctx, allt: list[TestRun], failed: list[TestRun], n_pass: int, n_skip: int, total_s: float) -> tuple[list[str], list[str]]:
    rng = ctx.rng
    n = len(allt)
    head = [f"Test project {ctx.workdir}/build"]
    numbered = []
    for i, t in enumerate(allt, 1):
        name = t.test_id or t.name
        numbered.append((i, name, t))
        head.append(f"      Start {i:2d}: {name}")
        res = {"passed": "   Passed", "skipped": "***Skipped", "failed": "***Failed", "error": "***Exception: SegFault"}[t.outcome]
        dots = "." * max(3, 40 - len(name))
        head.append(f"{i:2d}/{n} Test #{i:2d}: {name} {dots}{res}  {t.duration:6.2f} sec")
        if t.outcome in ("failed", "error"):
            head += [f"{ctx.workdir}/tests/test_{t.group}.c:{rng.randint(20, 300)}: {ln}" for ln in (t.message or "").splitlines()]
    pct = int(100 * (n - len(failed)) / max(1, n))
    tail = ["", f"{pct}% tests passed, {len(failed)} tests failed out of {n}", "", f"Total Test time (real) = {total_s:7.2f} sec"]
    if failed:
        tail += ["", "The following tests FAILED:"]
        tail += [f"\t{i:3d} - {name} ({'Failed' if t.outcome == 'failed' else 'SEGFAULT'})" for i, name, t in numbered if t.outcome in ("failed", "error")]
        tail.append("Errors while running CTest")
    return head, tail


def test_cmd(ctx: Ctx) -> str:
    return {
        "python": "python -m pytest -v --timeout=300 --junitxml=reports/junit.xml",
        "docker": f"docker run --rm {image_ref(ctx)} pytest -v tests/smoke",
        "node": "npx jest --ci --verbose --reporters=default --reporters=jest-junit",
        "maven": "mvn -B -ntp test",
        "gradle": "./gradlew test --no-daemon",
        "go": "go test -v -race -count=1 ./...",
        "rust": "cargo test --locked",
    }.get(ctx.eco, "ctest --test-dir build --output-on-failure -j4")


# ---------------------------------------------------------------------------------- failure causes

CauseFn = Callable[[Ctx], Cause]


def _pick(rng: Random, *options: Callable[[], Cause]) -> Cause:
    return rng.choice(options)()


def cause_network(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    ip = f"{rng.choice((104, 151, 140, 185, 199))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    def git() -> Cause:
        host = rng.choice(("github.com", "gitlab.example.com", "git.example.com"))
        return Cause("checkout", [f"fatal: unable to access 'https://{host}/{ctx.full}.git/': Could not resolve host: {host}"]
                     if rng.random() < 0.6 else
                     ["error: RPC failed; curl 56 Recv failure: Connection reset by peer",
                      "error: 4823 bytes of body are still expected", "fetch-pack: unexpected disconnect while reading sideband packet",
                      "fatal: early EOF", "fatal: fetch-pack: invalid index-pack output"], exit_code=128)

    def curl() -> Cause:
        host = rng.choice(("codecov.io", "uploader.codecov.io", "artifacts.example.com", "nexus.internal"))
        return Cause("post", ["  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current",
                              "                                 Dload  Upload   Total   Spent    Left  Speed",
                              f"  0     0    0     0    0     0      0      0 --:--:--  0:00:{rng.randint(10, 59)} --:--:--     0",
                              rng.choice((f"curl: (6) Could not resolve host: {host}", "curl: (56) Recv failure: Connection reset by peer",
                                          f"curl: (28) Failed to connect to {host} port 443 after {rng.randint(10000, 130000)} ms: Connection timed out",
                                          f"curl: (7) Failed to connect to {host} port 443 after {rng.randint(1, 300)} ms: Connection refused"))],
                     title="Upload coverage", cmd=f"curl -fsSL --retry 2 -o /tmp/upload https://{host}/latest/linux/uploader")

    def eco_specific() -> Cause:
        if eco == "node":
            code = rng.choice(("ETIMEDOUT", "ECONNRESET", "EAI_AGAIN"))
            pkg, ver = rng.choice(NPM_PKGS)
            reason = {"ETIMEDOUT": f"connect ETIMEDOUT {ip}:443", "ECONNRESET": "socket hang up", "EAI_AGAIN": "getaddrinfo EAI_AGAIN registry.npmjs.org"}[code]
            return Cause("install", [f"npm ERR! code {code}", f"npm ERR! {'syscall connect' if code == 'ETIMEDOUT' else 'errno ' + code}",
                                     f"npm ERR! network request to https://registry.npmjs.org/{pkg}/-/{pkg.split('/')[-1]}-{ver}.tgz failed, reason: {reason}",
                                     "npm ERR! network This is a problem related to network connectivity.",
                                     "npm ERR! network In most cases you are behind a proxy or have bad network settings.",
                                     "npm ERR! network ", "npm ERR! network If you are behind a proxy, please make sure that the",
                                     "npm ERR! network 'proxy' config is set properly.  See: 'npm help config'", "",
                                     "npm ERR! A complete log of this run can be found in: /home/runner/.npm/_logs/2026-01-01T10_00_00_000Z-debug-0.log"])
        if eco in ("python", "docker"):
            pkg, ver = rng.choice(PY_PKGS)
            return Cause("install", [
                f"WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed out. (read timeout=15)\")': /simple/{pkg}/",
                f"WARNING: Retrying (Retry(total=3, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f{hexs(rng, 10)}>: Failed to establish a new connection: [Errno 101] Network is unreachable')': /simple/{pkg}/",
                f"ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Max retries exceeded with url: /packages/{hexs(rng, 2)}/{hexs(rng, 2)}/{hexs(rng, 60)}/{pkg}-{ver}-py3-none-any.whl (Caused by ProtocolError('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer')))"])
        if eco in ("maven", "gradle"):
            grp, art, ver = rng.choice(MAVEN_ARTIFACTS)
            gid = grp.replace("/", ".")
            if eco == "maven":
                return Cause("install", [
                    f"[ERROR] Failed to execute goal on project {ctx.repo}: Could not resolve dependencies for project {ctx.package}:{ctx.repo}:jar:2.4.0-SNAPSHOT: Failed to collect dependencies at {gid}:{art}:jar:{ver}: Failed to read artifact descriptor for {gid}:{art}:jar:{ver}: The following artifacts could not be resolved: {gid}:{art}:pom:{ver} (absent): Could not transfer artifact {gid}:{art}:pom:{ver} from/to central (https://repo.maven.apache.org/maven2): "
                    + rng.choice(("Connection reset", f"Connect to repo.maven.apache.org:443 [repo.maven.apache.org/{ip}] failed: Connect timed out", "transfer failed for https://repo.maven.apache.org/maven2/" + f"{grp}/{art}/{ver}/{art}-{ver}.pom")),
                    "[ERROR] -> [Help 1]"])
            return Cause("install", ["", "FAILURE: Build failed with an exception.", "", "* What went wrong:",
                                     "Could not resolve all files for configuration ':compileClasspath'.",
                                     f"   > Could not resolve {gid}:{art}:{ver}.",
                                     f"     > Could not get resource 'https://repo.maven.apache.org/maven2/{grp}/{art}/{ver}/{art}-{ver}.pom'.",
                                     f"        > Could not GET 'https://repo.maven.apache.org/maven2/{grp}/{art}/{ver}/{art}-{ver}.pom'.",
                                     f"           > {rng.choice(('Connection reset', 'Read timed out', 'repo.maven.apache.org: Temporary failure in name resolution'))}"])
        if eco == "go":
            mod, ver = rng.choice(GO_MODS)
            return Cause("install", [f"go: {mod}@{ver}: Get \"https://proxy.golang.org/{mod.lower()}/@v/{ver}.mod\": " +
                                     rng.choice(("dial tcp: lookup proxy.golang.org on 127.0.0.53:53: server misbehaving",
                                                 f"dial tcp {ip}:443: i/o timeout", "net/http: TLS handshake timeout",
                                                 f"read tcp 10.1.0.{rng.randint(2, 250)}:{rng.randint(30000, 60000)}->{ip}:443: read: connection reset by peer"))])
        if eco == "rust":
            c, v = rng.choice(CRATES)
            return Cause("install", ["warning: spurious network error (3 tries remaining): [28] Timeout was reached (Operation timed out after 30000 milliseconds with 0 bytes received)",
                                     f"warning: spurious network error (2 tries remaining): [7] Couldn't connect to server (Failed to connect to index.crates.io port 443 after {rng.randint(100, 9000)} ms: Connection refused)",
                                     f"error: failed to download from `https://static.crates.io/crates/{c}/{v}/download`", "",
                                     "Caused by:", "  [35] SSL connect error (OpenSSL SSL_connect: Connection reset by peer in connection to static.crates.io:443 )"], exit_code=101)
        return Cause("install", ["Err:1 http://archive.ubuntu.com/ubuntu jammy InRelease", "  Temporary failure resolving 'archive.ubuntu.com'",
                                 "Err:2 http://security.ubuntu.com/ubuntu jammy-security InRelease", "  Temporary failure resolving 'security.ubuntu.com'",
                                 "Reading package lists...", "W: Failed to fetch http://archive.ubuntu.com/ubuntu/dists/jammy/InRelease  Temporary failure resolving 'archive.ubuntu.com'",
                                 "W: Some index files failed to download. They have been ignored, or old ones used instead.",
                                 "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?"], exit_code=100)

    return _pick(rng, git, curl, eco_specific, eco_specific)


def cause_rate_limit(ctx: Ctx) -> Cause:
    rng = ctx.rng

    def gh_api() -> Cause:
        inst = rng.randint(10_000_000, 59_999_999)
        return Cause("post", [rng.choice((f"HttpError: API rate limit exceeded for installation ID {inst}. If you reach out to GitHub Support for help, please include the request ID {hexs(rng, 4).upper()}:{hexs(rng, 5).upper()}:{hexs(rng, 7).upper()}.",
                                          f"gh: API rate limit exceeded for user ID {rng.randint(100000, 9999999)}. (HTTP 403)",
                                          f"Error: API rate limit exceeded for installation ID {inst}."))],
                     title="Comment on pull request", cmd="gh pr comment --body-file report.md")

    def dockerhub() -> Cause:
        img = rng.choice(("library/postgres:16", "library/redis:7-alpine", "bitnami/kafka:3.7", "library/python:3.12-slim", "library/node:20"))
        return Cause("setup", [f"Unable to find image '{img.split('/', 1)[1]}' locally", f"{img.split(':')[1]}: Pulling from {img.split(':')[0]}",
                               "docker: Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit.",
                               "See 'docker run --help'."], exit_code=125, title="Start services", cmd=f"docker run -d --name svc {img.split('/', 1)[1]}")

    def registry_429() -> Cause:
        if ctx.eco == "node":
            pkg, _ = rng.choice(NPM_PKGS)
            return Cause("install", ["npm ERR! code E429", f"npm ERR! 429 Too Many Requests - GET https://registry.npmjs.org/{pkg}"])
        if ctx.eco == "go":
            mod, ver = rng.choice(GO_MODS)
            return Cause("install", [f"go: {mod}@{ver}: reading https://proxy.golang.org/{mod}/@v/{ver}.info: 429 Too Many Requests"])
        if ctx.eco in ("python", "docker"):
            pkg, ver = rng.choice(PY_PKGS)
            return Cause("install", [f"ERROR: HTTP error 429 while getting https://files.pythonhosted.org/packages/{hexs(rng, 2)}/{hexs(rng, 2)}/{hexs(rng, 60)}/{pkg}-{ver}.tar.gz",
                                     f"ERROR: Could not install requirement {pkg}=={ver} from https://files.pythonhosted.org/packages/{pkg}-{ver}.tar.gz because of HTTP error 429 Client Error: Too Many Requests for url: https://files.pythonhosted.org/packages/{pkg}-{ver}.tar.gz"])
        return Cause("setup", [f"Attempting to download {rng.choice(('1.22.5', '20.15.1', '3.12.4', '17.0.11'))}...",
                               "##[warning]Failed to download version from manifest. Error: API rate limit exceeded for 52.224.%d.%d. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)" % (rng.randint(0, 255), rng.randint(1, 254)),
                               "Error: API rate limit exceeded for 52.224.%d.%d." % (rng.randint(0, 255), rng.randint(1, 254))],
                     title="Set up toolchain", cmd=None)

    return _pick(rng, gh_api, dockerhub, registry_429)


def cause_docker_registry(ctx: Ctx) -> Cause:
    rng = ctx.rng
    ref = image_ref(ctx)
    base = f"{ctx.owner.split('/')[0]}/{rng.choice(('base', 'builder', 'ci-runtime', 'jdk17-build'))}:{rng.randint(1, 4)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
    if ctx.provider == "gitlab" and rng.random() < 0.4:
        img = f"registry.gitlab.com/{ctx.owner}/ci-images/{rng.choice(('go', 'python', 'node'))}:{rng.randint(1, 3)}.{rng.randint(10, 22)}"
        return Cause("pre", [f"WARNING: Failed to pull image with policy \"always\": Error response from daemon: manifest for {img} not found: manifest unknown: manifest unknown (manager.go:250:0s)"],
                     exit_code=None, provider_tail=[f"ERROR: Job failed: failed to pull image \"{img}\" with specified policies [always]: Error response from daemon: manifest for {img} not found: manifest unknown: manifest unknown (manager.go:250:0s)"])
    options = [
        (["#2 [internal] load metadata for docker.io/" + base, f"#2 ERROR: docker.io/{base}: not found", "------",
          f" > [internal] load metadata for docker.io/{base}:", "------", f"ERROR: failed to solve: {base}: failed to resolve source metadata for docker.io/{base}: docker.io/{base}: not found"], "build"),
        ([f"Error response from daemon: manifest for {base} not found: manifest unknown: manifest unknown"], "build"),
        ([f"Error response from daemon: pull access denied for {base.split(':')[0]}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"], "build"),
        (docker_push_lines(ctx)[:4] + ["denied: requested access to the resource is denied"], "post"),
        (docker_push_lines(ctx)[:3] + ["unauthorized: authentication required"], "post"),
        (docker_push_lines(ctx)[:5] + ["received unexpected HTTP status: 500 Internal Server Error"], "post"),
        (docker_push_lines(ctx)[:4] + ["blob upload unknown: blob upload unknown to registry"], "post"),
    ]
    lines, stage = rng.choice(options)
    if stage == "post":
        return Cause("post", lines, title="Push image", cmd=f"docker push {ref}")
    return Cause("build" if ctx.eco == "docker" else "post", lines, title="Build image", cmd=f"docker build -t {ref} .")


def cause_cache_corruption(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco

    def tar() -> Cause:
        key = f"{ctx.eco}-{rng.choice(('Linux', 'linux-x64'))}-{hexs(rng, 64)}"
        lines = [f"Cache Size: ~{rng.randint(80, 1900)} MB ({rng.randint(80_000_000, 1_900_000_000)} B)",
                 f"/usr/bin/tar -xf /home/runner/work/_temp/{hexs(rng, 8)}-{hexs(rng, 4)}/cache.tzst -P -C {ctx.workdir} --use-compress-program unzstd",
                 "/*stdin*\\ : Read error (39) : premature end", "/usr/bin/tar: Unexpected EOF in archive",
                 "/usr/bin/tar: Unexpected EOF in archive", "/usr/bin/tar: Error is not recoverable: exiting now",
                 f"##[error]Failed to restore cache entry {key}: \"/usr/bin/tar\" failed with error: The process '/usr/bin/tar' failed with exit code 2"]
        if ctx.provider == "gitlab":
            lines = [f"Checking cache for {ctx.eco}-deps-{hexs(rng, 8)}-protected...",
                     f"Downloading cache from https://storage.googleapis.com/gitlab-runner-cache/project/{rng.randint(1000, 99999)}/{ctx.eco}-deps-protected  ETag=\"{hexs(rng, 32)}\"",
                     "WARNING: cache.zip: zip: not a valid zip file", "Failed to extract cache",
                     "tar: Unexpected EOF in archive", "tar: Error is not recoverable: exiting now"]
        return Cause("setup", lines, exit_code=2, title="Restore cache", cmd="tar -xf cache.tar.zst -C .")

    def eco_specific() -> Cause:
        if eco == "node":
            pkg, ver = rng.choice(NPM_PKGS)
            return Cause("install", ["npm ERR! code EINTEGRITY",
                                     f"npm ERR! sha512-{alnum(rng, 86)}== integrity checksum failed when using sha512: wanted sha512-{alnum(rng, 86)}== but got sha512-{alnum(rng, 86)}==. ({rng.randint(2000, 900000)} bytes)",
                                     "npm ERR! A complete log of this run can be found in: /home/runner/.npm/_logs/2026-01-01T10_00_00_000Z-debug-0.log"])
        if eco == "go":
            mod, ver = rng.choice(GO_MODS)
            return Cause("install", [f"verifying {mod}@{ver}: checksum mismatch", f"\tdownloaded: h1:{alnum(rng, 43)}=",
                                     f"\tgo.sum:     h1:{alnum(rng, 43)}=", "", "SECURITY ERROR",
                                     "This download does NOT match an earlier download recorded in go.sum.",
                                     "The bits may have been replaced on the origin server, or an attacker may",
                                     "have intercepted the download attempt.", "", "For more information, see 'go help module-auth'."])
        if eco == "gradle":
            return Cause("build", ["FAILURE: Build failed with an exception.", "", "* What went wrong:",
                                   f"Could not read workspace metadata from /home/runner/.gradle/caches/transforms-4/{hexs(rng, 32)}/metadata.bin",
                                   "> Unexpected end of ZLIB input stream"])
        if eco == "maven":
            grp, art, ver = rng.choice(MAVEN_ARTIFACTS)
            return Cause("build", [f"[ERROR] Error reading /root/.m2/repository/{grp}/{art}/{ver}/{art}-{ver}.jar; zip file is empty" if rng.random() < 0.5 else
                                   f"[ERROR] error reading /root/.m2/repository/{grp}/{art}/{ver}/{art}-{ver}.jar; invalid LOC header (bad signature)",
                                   f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.13.0:compile (default-compile) on project {ctx.repo}: Fatal error compiling: error reading /root/.m2/repository/{grp}/{art}/{ver}/{art}-{ver}.jar; invalid LOC header (bad signature) -> [Help 1]"])
        if eco in ("python", "docker"):
            pkg, ver = rng.choice(PY_PKGS)
            return Cause("install", [f"Processing /home/runner/.cache/pip/wheels/{hexs(rng, 2)}/{hexs(rng, 2)}/{hexs(rng, 40)}/{pkg}-{ver}-py3-none-any.whl",
                                     "ERROR: Exception:", "Traceback (most recent call last):",
                                     '  File "/usr/local/lib/python3.12/site-packages/pip/_internal/cli/base_command.py", line 180, in exc_logging_wrapper',
                                     "    status = run_func(*args)", '  File "/usr/local/lib/python3.12/zipfile/__init__.py", line 1659, in open',
                                     '    raise BadZipFile("Bad magic number for file header")', "zipfile.BadZipFile: Bad magic number for file header"], exit_code=2)
        if eco == "rust":
            c, v = rng.choice(CRATES)
            return Cause("build", [f"error: failed to unpack package `{c} v{v}`", "", "Caused by:",
                                   f"  failed to open `/home/runner/.cargo/registry/src/index.crates.io-6f17d22bba15001f/{c}-{v}/.cargo-ok`", "",
                                   "Caused by:", "  invalid gzip header"], exit_code=101)
        return Cause("build", [f"ccache: error: Failed to read {ctx.workdir}/.ccache/{hexs(rng, 1)}/{hexs(rng, 1)}/{hexs(rng, 30)}R: Corrupt manifest (bad magic)",
                               "ccache: error: corrupt cache entry, run `ccache --clear` to recover"] , exit_code=1)

    return _pick(rng, tar, eco_specific, eco_specific)


def cause_disk_full(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    generic: list[tuple[list[str], str]] = [
        ([f"write /var/lib/docker/tmp/GetImageBlob{rng.randint(100000000, 999999999)}: no space left on device"], "post"),
        (["ERROR: failed to solve: failed to copy files: copy file range failed: no space left on device"], "build"),
    ]
    if ctx.provider == "github":
        generic.append(([f"System.IO.IOException: No space left on device : '/home/runner/runners/2.321.0/_diag/Worker_20260101-{rng.randint(100000, 235959)}-utc.log'",
                         "   at System.IO.RandomAccess.WriteAtOffset(SafeFileHandle handle, ReadOnlySpan`1 buffer, Int64 fileOffset)",
                         "   at System.IO.Strategies.BufferedFileStreamStrategy.FlushWrite()"], "build"))
    specific: dict[str, list[tuple[list[str], str]]] = {
        "python": [([f"OSError: [Errno 28] No space left on device: '/tmp/pytest-of-runner/pytest-0/test_{rng.choice(MODULES)}0/data.bin'"], "test"),
                   (["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"], "install")],
        "node": [(["npm ERR! code ENOSPC", "npm ERR! syscall write", "npm ERR! errno -28",
                   "npm ERR! nospc ENOSPC: no space left on device, write",
                   "npm ERR! nospc There appears to be insufficient space on your system to finish."], "install")],
        "maven": [([f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-jar-plugin:3.4.1:jar (default-jar) on project {ctx.repo}: Error assembling JAR: Problem creating jar: No space left on device -> [Help 1]"], "build")],
        "gradle": [(["", "FAILURE: Build failed with an exception.", "", "* What went wrong:",
                     "java.io.IOException: No space left on device"], "build")],
        "rust": [([f"error: could not write to `{ctx.workdir}/target/debug/deps/lib{rng.choice(CRATES)[0].replace('-', '_')}-{hexs(rng, 16)}.rlib`: No space left on device (os error 28)"], "build"),
                 (["/usr/bin/ld: final link failed: No space left on device", "collect2: error: ld returned 1 exit status"], "build")],
        "cmake": [(["/usr/bin/ld: final link failed: No space left on device", "collect2: error: ld returned 1 exit status"], "build"),
                  ([f"cc1: fatal error: error writing to /tmp/cc{alnum(rng, 6)}.s: No space left on device", "compilation terminated."], "build")],
        "go": [([f"go: creating work dir: mkdir /tmp/go-build{rng.randint(10**8, 10**9)}: no space left on device"], "build"),
               ([f"write /tmp/go-build{rng.randint(10**8, 10**9)}/b{rng.randint(100, 999)}/_pkg_.a: no space left on device"], "test")],
        "docker": [(["ERROR: failed to solve: failed to copy files: copy file range failed: no space left on device"], "build")],
    }
    pool = specific.get(eco, [])
    lines, stage = rng.choice(pool) if pool and rng.random() < 0.7 else rng.choice(generic)
    if stage == "post":
        return Cause("post", lines, title="Pull service image", cmd="docker pull postgres:16")
    if stage == "build" and eco == "python":
        stage = "test"
    return Cause(stage, lines, exit_code=1)


def _shell_prefix(ctx: Ctx) -> str:
    """How the platform's shell wrapper names itself when it reports a killed child."""
    rng = ctx.rng
    if ctx.provider == "github":
        return f"/home/runner/work/_temp/{hexs(rng, 8)}-{hexs(rng, 4)}-{hexs(rng, 4)}.sh: line {rng.randint(1, 3)}:"
    if ctx.provider == "jenkins":
        return f"{ctx.workdir}@tmp/durable-{hexs(rng, 8)}/script.sh.copy: line 1:"
    return f"/bin/bash: line {rng.randint(1, 140)}:"


def _stage_cmd(ctx: Ctx, stage: str) -> str:
    if stage == "test":
        return test_cmd(ctx)
    return {"node": "npm run build", "maven": "mvn -B -ntp -DskipTests package", "gradle": "./gradlew assemble testClasses --no-daemon",
            "go": "go build -v ./...", "rust": "cargo build --locked --all-targets", "docker": f"docker build -t {image_ref(ctx)} ."}.get(ctx.eco, "make -j8")


def cause_oom(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    stage = rng.choice(("build", "test", "test")) if eco != "python" else "test"
    if eco in ("maven", "gradle"):
        if rng.random() < 0.5:
            return Cause(stage, [f"Exception in thread \"{rng.choice(('main', 'pool-2-thread-1', 'ForkJoinPool.commonPool-worker-3'))}\" java.lang.OutOfMemoryError: Java heap space",
                                 "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)",
                                 "\tat java.base/java.util.ArrayList.grow(ArrayList.java:237)",
                                 f"\tat {ctx.package}.{rng.choice(MODULES)}.{rng.choice(MODULES).capitalize()}{rng.choice(JAVA_SUFFIX)}.load({rng.choice(MODULES).capitalize()}.java:{rng.randint(20, 300)})"]
                         + (["[ERROR] There was an error in the forked process", "[ERROR] Java heap space"] if eco == "maven" else
                            ["", "FAILURE: Build failed with an exception.", "", "* What went wrong:", "Execution failed for task ':test'.",
                             "> Process 'Gradle Test Executor 1' finished with non-zero exit value 1"]))
        return Cause("test", ["[ERROR] ExecutionException The forked VM terminated without properly saying goodbye. VM crash or System.exit called?",
                              f"[ERROR] Command was /bin/sh -c cd '{ctx.workdir}' && '/usr/lib/jvm/temurin-17-jdk-amd64/bin/java' '-Xmx{rng.choice((512, 1024, 2048))}m' '-jar' '{ctx.workdir}/target/surefire/surefirebooter-{rng.randint(10**15, 10**16)}.jar'",
                              "[ERROR] Process Exit Code: 137", "[ERROR] Crashed tests:", f"[ERROR] {ctx.package}.{rng.choice(MODULES).capitalize()}ServiceTest"],
                     exit_code=137)
    if eco == "node":
        mb = rng.choice((2048, 4096, 4144))
        return Cause(rng.choice(("build", "test")), ["", "<--- Last few GCs --->", "",
                                                     f"[{rng.randint(1000, 9999)}:0x{hexs(rng, 12)}]   {rng.randint(40000, 99000)} ms: Mark-Compact {mb - 3}.{rng.randint(1, 9)} ({mb + 40}.{rng.randint(1, 9)}) -> {mb - 9}.{rng.randint(1, 9)} ({mb + 41}.{rng.randint(1, 9)}) MB, {rng.randint(900, 3000)}.{rng.randint(1, 9)} / 0.0 ms  (average mu = 0.{rng.randint(100, 300)}, current mu = 0.0{rng.randint(10, 99)}) allocation failure; scavenge might not succeed",
                                                     "", "", "<--- JS stacktrace --->", "",
                                                     "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                                                     " 1: 0xb8ced1 node::OOMErrorHandler(char const*, v8::OOMDetails const&) [node]",
                                                     " 2: 0xf06460 v8::Utils::ReportOOMFailure(v8::internal::Isolate*, char const*, v8::OOMDetails const&) [node]",
                                                     "Aborted (core dumped)"], exit_code=134)
    if eco == "rust":
        return Cause("build", [f"   Compiling {ctx.package} v0.4.0 ({ctx.workdir})",
                               f"error: could not compile `{ctx.package}` (lib)", "", "Caused by:",
                               f"  process didn't exit successfully: `/home/runner/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/rustc --crate-name {ctx.package.replace('-', '_')} --edition=2021 src/lib.rs` (signal: 9, SIGKILL: kill)"],
                     exit_code=101)
    if eco == "cmake":
        return Cause("build", ["c++: fatal error: Killed signal terminated program cc1plus", "compilation terminated.",
                               f"make[2]: *** [src/CMakeFiles/{ctx.repo}.dir/build.make:{rng.randint(70, 900)}: src/CMakeFiles/{ctx.repo}.dir/{rng.choice(MODULES)}.cpp.o] Error 1",
                               f"make[1]: *** [CMakeFiles/Makefile2:{rng.randint(80, 300)}: src/CMakeFiles/{ctx.repo}.dir/all] Error 2", "make: *** [Makefile:146: all] Error 2"], exit_code=2)
    if eco == "go" and rng.random() < 0.5:
        return Cause("test", ["fatal error: runtime: out of memory", "", "runtime stack:",
                              "runtime.throw({0x{0}, 0x16})".replace("{0}", hexs(rng, 6)),
                              "\t/opt/hostedtoolcache/go/1.22.5/x64/src/runtime/panic.go:1023 +0x5c fp=0x7ffd{0} sp=0x7ffd{0} pc=0x43f1bc".replace("{0}", hexs(rng, 8)),
                              f"FAIL\t{ctx.package}/internal/{rng.choice(MODULES)}\t{rng.randint(10, 90)}.{rng.randint(100, 999)}s"])
    if eco == "docker" and stage == "build":
        step = rng.choice(("npm run build", "pip wheel --no-deps -w /wheels .", "cargo build --release"))
        return Cause("build", [f"#9 [5/6] RUN {step}", f"#9 {rng.randint(30, 400)}.{rng.randint(100, 999)} Killed", "#9 ERROR: process \"/bin/sh -c %s\" did not complete successfully: exit code: 137" % step,
                               "------", f" > [5/6] RUN {step}:", "------",
                               f"ERROR: failed to solve: process \"/bin/sh -c {step}\" did not complete successfully: exit code: 137"], exit_code=1)
    cmd = _stage_cmd(ctx, stage)
    killed = f"{_shell_prefix(ctx)} {rng.randint(40, 30000)} Killed                  {cmd}"
    if ctx.provider == "gitlab" and rng.random() < 0.5:
        return Cause(stage, [killed], exit_code=137, provider_tail=["ERROR: Job failed: command terminated with exit code 137"])
    return Cause(stage, [killed], exit_code=137)


def cause_crash(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    if eco == "rust":
        f = rng.choice(MODULES)
        return Cause("test", [f"thread 'main' panicked at src/{f}.rs:{rng.randint(10, 400)}:{rng.randint(5, 40)}:",
                              rng.choice(("called `Option::unwrap()` on a `None` value", "index out of bounds: the len is 0 but the index is 0",
                                          "attempt to subtract with overflow")),
                              "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
                              "error: test failed, to rerun pass `--test integration`", "",
                              "Caused by:", f"  process didn't exit successfully: `{ctx.workdir}/target/debug/deps/integration-{hexs(rng, 16)}` (exit status: 101)"],
                     exit_code=101)
    if eco == "go":
        mod = rng.choice(MODULES)
        return Cause("test", ["panic: runtime error: invalid memory address or nil pointer dereference",
                              f"[signal SIGSEGV: segmentation violation code=0x1 addr=0x{rng.choice(('0', '8', '18', '30'))} pc=0x{hexs(rng, 6)}]", "",
                              f"goroutine {rng.randint(1, 300)} [running]:",
                              f"{ctx.package}/internal/{mod}.(*{mod.capitalize()}Pool).Close(0x0)",
                              f"\t{ctx.workdir}/internal/{mod}/pool.go:{rng.randint(20, 300)} +0x{hexs(rng, 2)}",
                              f"{ctx.package}/internal/{mod}.Test{mod.capitalize()}Shutdown(0xc000{hexs(rng, 6)})",
                              f"\t{ctx.workdir}/internal/{mod}/pool_test.go:{rng.randint(20, 300)} +0x{hexs(rng, 2)}",
                              f"FAIL\t{ctx.package}/internal/{mod}\t{rng.randint(0, 9)}.{rng.randint(100, 999)}s"], exit_code=2)
    if eco in ("maven", "gradle"):
        return Cause("test", ["#", "# A fatal error has been detected by the Java Runtime Environment:", "#",
                              f"#  SIGSEGV (0xb) at pc=0x00007f{hexs(rng, 10)}, pid={rng.randint(1000, 30000)}, tid={rng.randint(1000, 30000)}", "#",
                              "# JRE version: OpenJDK Runtime Environment Temurin-17.0.11+9 (17.0.11+9) (build 17.0.11+9)",
                              "# Problematic frame:", f"# C  [librocksdbjni{hexs(rng, 8)}.so+0x{hexs(rng, 6)}]  rocksdb::DBImpl::Get+0x{hexs(rng, 3)}", "#",
                              "# An error report file with more information is saved as:", f"# {ctx.workdir}/hs_err_pid{rng.randint(1000, 30000)}.log"],
                     exit_code=134)
    if eco in ("python", "docker"):
        return Cause("test", ["Fatal Python error: Segmentation fault", "",
                              f"Current thread 0x00007f{hexs(rng, 10)} (most recent call first):",
                              f"  File \"/usr/local/lib/python3.12/site-packages/{rng.choice(('numpy', 'pyarrow', 'psycopg', 'lxml'))}/{rng.choice(MODULES)}.py\", line {rng.randint(20, 900)} in {rng.choice(MODULES)}",
                              f"  File \"{ctx.workdir}/src/{rng.choice(MODULES)}.py\", line {rng.randint(10, 300)} in load",
                              "Segmentation fault (core dumped)"], exit_code=139)
    if eco == "node":
        return Cause("test", [f"PASS src/{rng.choice(MODULES)}/index.test.tsx", f"{_shell_prefix(ctx)}  {rng.randint(1000, 9000)} Segmentation fault      (core dumped) npx jest --ci"],
                     exit_code=139)
    return Cause("test", [f"/bin/sh: line 1: {rng.randint(1000, 30000)} Segmentation fault      (core dumped) ./build/{ctx.repo}_selftest --all",
                          f"make: *** [Makefile:{rng.randint(20, 200)}: check] Error 139"], exit_code=139, title="Self test", cmd="make check")


def cause_compilation(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    mod = rng.choice(MODULES)
    ln, col = rng.randint(10, 400), rng.randint(3, 40)
    if eco == "rust":
        e = rng.choice((("E0308", "mismatched types", "expected `u64`, found `usize`"),
                        ("E0425", "cannot find value `timeout_ms` in this scope", "not found in this scope"),
                        ("E0599", f"no method named `poll_ready` found for struct `{mod.capitalize()}` in the current scope", "method not found"),
                        ("E0382", "borrow of moved value: `buf`", "value borrowed here after move")))
        return Cause("build", [f"   Compiling {ctx.package} v0.4.0 ({ctx.workdir})", f"error[{e[0]}]: {e[1]}",
                               f"  --> src/{mod}.rs:{ln}:{col}", "   |", f"{ln:<3}|     let n = {mod}::limit(cfg);", f"   |             ^^^^^^^^^^^^^^^^^^ {e[2]}", "",
                               f"For more information about this error, try `rustc --explain {e[0]}`.",
                               f"error: could not compile `{ctx.package}` (lib) due to {rng.randint(1, 4)} previous error{'s' if rng.random() < 0.5 else ''}"],
                     exit_code=101)
    if eco == "cmake":
        ext = rng.choice(("c", "cpp"))
        msg = rng.choice((f"implicit declaration of function '{mod}_flush_unsafe' [-Werror=implicit-function-declaration]",
                          f"'struct {mod}_ctx' has no member named 'len'", f"unknown type name '{mod}_handle_t'",
                          "expected ';' before '}' token", f"conflicting types for '{mod}_init'"))
        return Cause("build", [f"[ {rng.randint(10, 90)}%] Building {'C' if ext == 'c' else 'CXX'} object src/CMakeFiles/{ctx.repo}.dir/{mod}.{ext}.o",
                               f"{ctx.workdir}/src/{mod}.{ext}: In function '{mod}_process':",
                               f"{ctx.workdir}/src/{mod}.{ext}:{ln}:{col}: error: {msg}",
                               f"  {ln} |     {mod}_flush_unsafe(ctx);", "      |     ^~~~~~~~~~~~~~~~~~",
                               "cc1: all warnings being treated as errors" if "Werror" in msg else "",
                               f"make[2]: *** [src/CMakeFiles/{ctx.repo}.dir/build.make:{rng.randint(70, 900)}: src/CMakeFiles/{ctx.repo}.dir/{mod}.{ext}.o] Error 1",
                               f"make[1]: *** [CMakeFiles/Makefile2:{rng.randint(80, 300)}: src/CMakeFiles/{ctx.repo}.dir/all] Error 2", "make: *** [Makefile:146: all] Error 2"],
                     exit_code=2)
    if eco == "maven":
        path, cls = _java_file(ctx)
        err = rng.choice(("cannot find symbol", "incompatible types: java.lang.String cannot be converted to java.math.BigDecimal",
                          f"method {mod}(java.lang.String) is already defined in class {cls}", "';' expected"))
        return Cause("build", ["[INFO] -------------------------------------------------------------", "[ERROR] COMPILATION ERROR : ",
                               "[INFO] -------------------------------------------------------------",
                               f"[ERROR] {ctx.workdir}/{path}:[{ln},{col}] {err}"]
                     + ([f"  symbol:   method {mod}Rounded(java.math.BigDecimal)", f"  location: class {cls}"] if err == "cannot find symbol" else [])
                     + ["[INFO] 1 error", "[INFO] -------------------------------------------------------------",
                        "[INFO] BUILD FAILURE",
                        f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.13.0:compile (default-compile) on project {ctx.repo}: Compilation failure",
                        f"[ERROR] {ctx.workdir}/{path}:[{ln},{col}] {err}"])
    if eco == "gradle":
        path, cls = _java_file(ctx)
        return Cause("build", ["> Task :compileJava FAILED", f"{ctx.workdir}/{path}:{ln}: error: {rng.choice(('cannot find symbol', 'incompatible types: possible lossy conversion from long to int', 'unreported exception IOException; must be caught or declared to be thrown'))}",
                               f"        return {mod}.total();", "                  ^", "1 error", "", "FAILURE: Build failed with an exception.", "",
                               "* What went wrong:", "Execution failed for task ':compileJava'.",
                               "> Compilation failed; see the compiler error output for details."])
    if eco == "go":
        return Cause("build", [f"# {ctx.package}/internal/{mod}",
                               f"internal/{mod}/{mod}.go:{ln}:{col}: {rng.choice(('undefined: yaml.UnmarshalStrict', 'cannot use n (variable of type int64) as int value in argument to ' + mod + '.Limit', 'declared and not used: resp', 'too many arguments in call to client.Do'))}"]
                     + ([f"internal/{mod}/{mod}.go:{ln + 7}:{col}: missing return"] if rng.random() < 0.4 else []), exit_code=1)
    # node / TypeScript
    return Cause("build", [f"> {ctx.repo}@1.0.0 build", "> tsc -p tsconfig.build.json && vite build", "",
                           f"src/{mod}/{mod.capitalize()}.tsx({ln},{col}): error TS2322: Type 'string' is not assignable to type 'number'.",
                           *([f"src/{mod}/index.ts({ln // 2},{col}): error TS2339: Property 'total' does not exist on type '{mod.capitalize()}Props'."] if rng.random() < 0.5 else []),
                           "npm ERR! Lifecycle script `build` failed with error: ", "npm ERR! Error: command failed",
                           f"npm ERR!   in workspace: {ctx.repo}", f"npm ERR!   at location: {ctx.workdir}"], exit_code=2)


def cause_lint(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    mods = rng.sample(MODULES, 4)
    if eco in ("python", "docker"):
        tool = rng.choice(("flake8", "ruff", "black", "mypy"))
        if tool == "flake8":
            codes = (("E302", "expected 2 blank lines, found 1"), ("F401", "'os' imported but unused"), ("E501", "line too long (104 > 100 characters)"),
                     ("W291", "trailing whitespace"), ("F841", "local variable 'resp' is assigned to but never used"))
            return Cause("lint", [f"src/{m}.py:{rng.randint(1, 300)}:{rng.randint(1, 80)}: {c} {t}" for m in mods[:rng.randint(1, 4)] for c, t in [rng.choice(codes)]],
                         cmd="flake8 src tests")
        if tool == "ruff":
            k = rng.randint(1, 4)
            return Cause("lint", [f"src/{m}.py:{rng.randint(1, 300)}:{rng.randint(1, 80)}: F401 [*] `{rng.choice(('os', 'typing.Any', 'json', 're'))}` imported but unused" for m in mods[:k]]
                         + [f"Found {k} error{'s' if k > 1 else ''}.", f"[*] {k} fixable with the `--fix` option."], cmd="ruff check .")
        if tool == "black":
            k = rng.randint(1, 3)
            return Cause("lint", [f"would reformat {ctx.workdir}/src/{m}.py" for m in mods[:k]] + ["", "Oh no! 💥 💔 💥",
                         f"{k} file{'s' if k > 1 else ''} would be reformatted, {rng.randint(30, 300)} files would be left unchanged."], cmd="black --check .")
        return Cause("lint", [f"src/{mods[0]}.py:{rng.randint(1, 300)}: error: Incompatible return value type (got \"str | None\", expected \"str\")  [return-value]",
                              f"Found 1 error in 1 file (checked {rng.randint(30, 300)} source files)"], cmd="mypy src")
    if eco == "node":
        if rng.random() < 0.3:
            k = rng.randint(1, 4)
            return Cause("lint", ["Checking formatting..."] + [f"[warn] src/{m}/{m.capitalize()}.tsx" for m in mods[:k]]
                         + [f"[warn] Code style issues found in {k} file{'s' if k > 1 else ''}. Run Prettier with --write to fix."], cmd="npx prettier --check .")
        rules = (("error", "'total' is assigned a value but never used", "@typescript-eslint/no-unused-vars"),
                 ("error", "React Hook useEffect has a missing dependency: 'load'", "react-hooks/exhaustive-deps"),
                 ("error", "Unexpected any. Specify a different type", "@typescript-eslint/no-explicit-any"),
                 ("error", "Expected '===' and instead saw '=='", "eqeqeq"))
        lines: list[str] = []
        k = 0
        for m in mods[:rng.randint(1, 3)]:
            lines += ["", f"{ctx.workdir}/src/{m}/{m.capitalize()}.tsx"]
            for _ in range(rng.randint(1, 2)):
                sev, msg, rule = rng.choice(rules)
                lines.append(f"  {rng.randint(1, 300)}:{rng.randint(1, 60)}  {sev}  {msg}  {rule}")
                k += 1
        lines += ["", f"✖ {k} problem{'s' if k > 1 else ''} ({k} error{'s' if k > 1 else ''}, 0 warnings)", ""]
        return Cause("lint", lines, cmd="npx eslint . --max-warnings=0")
    if eco == "maven":
        path, _ = _java_file(ctx)
        return Cause("lint", [f"[ERROR] {path}:[{rng.randint(10, 300)},{rng.randint(3, 40)}] (whitespace) WhitespaceAround: '{{' is not preceded with whitespace. [WhitespaceAround]",
                              f"[ERROR] {path}:[{rng.randint(10, 300)}] (sizes) LineLength: Line is longer than 120 characters (found 131). [LineLength]",
                              f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-checkstyle-plugin:3.4.0:check (validate) on project {ctx.repo}: You have 2 Checkstyle violations. -> [Help 1]"])
    if eco == "gradle":
        path, _ = _java_file(ctx)
        return Cause("lint", ["> Task :spotlessJava", "> Task :spotlessJavaCheck FAILED", "", "FAILURE: Build failed with an exception.", "",
                              "* What went wrong:", "Execution failed for task ':spotlessJavaCheck'.",
                              "> The following files had format violations:", f"      {path}", "          @@ -12,7 +12,8 @@",
                              "          -import\\u0020java.util.*;", "          +import\\u0020java.util.List;",
                              "  Run './gradlew :spotlessApply' to fix these violations."])
    if eco == "go":
        return Cause("lint", [f"internal/{mods[0]}/{mods[0]}.go:{rng.randint(10, 300)}:{rng.randint(2, 30)}: ineffectual assignment to err (ineffassign)",
                              f"internal/{mods[1]}/{mods[1]}.go:{rng.randint(10, 300)}:{rng.randint(2, 30)}: Error return value of `resp.Body.Close` is not checked (errcheck)",
                              "\tdefer resp.Body.Close()", "\t                    ^"])
    if eco == "rust":
        if rng.random() < 0.4:
            return Cause("lint", [f"Diff in {ctx.workdir}/src/{mods[0]}.rs at line {rng.randint(10, 300)}:", "     fn poll(&mut self) {",
                                  "-        let n=self.buf.len();", "+        let n = self.buf.len();", "     }"], cmd="cargo fmt --all -- --check")
        return Cause("lint", ["error: this `if` has identical blocks", f"  --> src/{mods[0]}.rs:{rng.randint(10, 300)}:{rng.randint(5, 30)}", "   |",
                              "   = help: for further information visit https://rust-lang.github.io/rust-clippy/master/index.html#if_same_then_else",
                              "   = note: `-D clippy::if-same-then-else` implied by `-D warnings`",
                              f"error: could not compile `{ctx.package}` (lib) due to 1 previous error"], exit_code=101)
    if eco == "docker":
        pass
    return Cause("lint", [f"src/{mods[0]}.c:{rng.randint(10, 300)}:{rng.randint(2, 30)}: error: code should be clang-formatted [-Wclang-format-violations]",
                          f"    if({mods[0]}_ready(ctx)){{", "      ^"])


def cause_build_config(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    p = ctx.provider
    if p == "github" and rng.random() < 0.35:
        ln = rng.randint(10, 80)
        return Cause("pre", [f"##[error]Invalid workflow file: .github/workflows/ci.yml#L{ln}",
                             f"The workflow is not valid. .github/workflows/ci.yml (Line: {ln}, Col: {rng.randint(3, 12)}): " +
                             rng.choice(("Unexpected value 'runs_on'", "Required property is missing: runs-on",
                                         "Unrecognized named-value: 'secret'. Located at position 1 within expression: secret.DEPLOY_KEY"))],
                     exit_code=None, provider_tail=[])
    if p == "jenkins" and rng.random() < 0.4:
        ln = rng.randint(10, 120)
        return Cause("pre", ["org.codehaus.groovy.control.MultipleCompilationErrorsException: startup failed:",
                             f"WorkflowScript: {ln}: Expected a stage @ line {ln}, column {rng.randint(5, 20)}.",
                             "           stages {", "           ^", "", "1 error", "",
                             "\tat org.codehaus.groovy.control.ErrorCollector.failIfErrors(ErrorCollector.java:309)"], exit_code=None)
    if p == "circleci" and rng.random() < 0.4:
        return Cause("pre", ["#!/bin/sh -eo pipefail", "# ERROR IN CONFIG FILE:",
                             f"# [#/jobs/{rng.choice(('build', 'test'))}] only 1 subschema matches out of 2",
                             f"# 1. [#/jobs/test/steps/{rng.randint(1, 9)}] 0 subschemas matched instead of one",
                             "# |   1. [#/jobs/test/steps/3] expected type: String, found: Mapping", "", "-------", "",
                             "Don't know what to do? Ask for help in the forum: https://discuss.circleci.com", "", "exit 1"])
    if p == "gitlab" and rng.random() < 0.3:
        return Cause("build", [f"$ ./scripts/ci/{rng.choice(('build', 'test'))}.sh", f"/usr/bin/bash: line {rng.randint(100, 200)}: ./scripts/ci/build.sh: Permission denied"], exit_code=126)
    if eco == "cmake":
        return Cause("build", [f"CMake Error at CMakeLists.txt:{rng.randint(5, 60)} (find_package):",
                               "  By not providing \"FindProtobuf.cmake\" in CMAKE_MODULE_PATH this project has",
                               "  asked CMake to find a package configuration file provided by \"Protobuf\", but",
                               "  CMake did not find one.", "", "-- Configuring incomplete, errors occurred!"] if rng.random() < 0.5 else
                     [f"CMake Error at CMakeLists.txt:{rng.randint(5, 60)} (add_executable):", "  Cannot find source file:", "",
                      f"    src/{rng.choice(MODULES)}/legacy.c", "", "-- Generating done (0.0s)", "CMake Generate step failed.  Build files cannot be regenerated correctly."])
    if eco == "node":
        return Cause("build", rng.choice(([f"npm ERR! Missing script: \"{rng.choice(('build:prod', 'test:ci', 'typecheck'))}\"", "npm ERR! ",
                                           "npm ERR! To see a list of scripts, run:", "npm ERR!   npm run"],
                                          ["npm ERR! code EJSONPARSE", f"npm ERR! path {ctx.workdir}/package.json",
                                           f"npm ERR! JSON.parse Unexpected token \"}}\" (0x7D) in JSON at position {rng.randint(300, 2000)} while parsing near \"...\\\"^5.3.4\\\",\\n  }},\\n  \\\"engines\\\"...\"",
                                           "npm ERR! JSON.parse Failed to parse JSON data."])), cmd="npm run build")
    if eco == "maven":
        return Cause("build", ["[ERROR] [ERROR] Some problems were encountered while processing the POMs:",
                               f"[ERROR] Malformed POM {ctx.workdir}/pom.xml: Unrecognised tag: 'dependncy' (position: START_TAG seen ...</version>\\n    <dependncy>... @{rng.randint(40, 200)}:16)  @ {ctx.workdir}/pom.xml, line {rng.randint(40, 200)}, column 16",
                               "[ERROR] The build could not read 1 project -> [Help 1]"])
    if eco == "gradle":
        return Cause("build", ["FAILURE: Build failed with an exception.", "", "* Where:", f"Build file '{ctx.workdir}/build.gradle' line: {rng.randint(10, 80)}", "",
                               "* What went wrong:", "A problem occurred evaluating root project '%s'." % ctx.repo,
                               "> Could not find method implmentation() for arguments [org.postgresql:postgresql:42.7.3] on object of type org.gradle.api.internal.artifacts.dsl.dependencies.DefaultDependencyHandler."])
    if eco == "go":
        return Cause("build", ["go: errors parsing go.mod:", f"{ctx.workdir}/go.mod:{rng.randint(3, 9)}: unknown directive: requre"])
    if eco == "rust":
        return Cause("build", [f"error: failed to parse manifest at `{ctx.workdir}/Cargo.toml`", "", "Caused by:",
                               "  TOML parse error at line 14, column 1", "     |", "  14 | tokio = { version = \"1\", features = [\"full\"] ", "     | ^",
                               "  invalid inline table", "  expected `}`"], exit_code=101)
    if eco == "docker":
        return Cause("build", ["#1 [internal] load build definition from Dockerfile", "#1 transferring dockerfile: 1.42kB done", "#1 DONE 0.0s",
                               f"Dockerfile:{rng.randint(5, 40)}", "--------------------", "  12 | COPPY requirements.txt .", "--------------------",
                               "ERROR: failed to solve: dockerfile parse error on line 12: unknown instruction: COPPY (did you mean COPY?)"])
    return Cause("install", ["ERROR: Exception:", "  configuration error: `project` must not contain {'dependecies'} properties",
                             "  DESCRIPTION:", "      Project metadata (as defined in PEP 621)",
                             "ValueError: invalid pyproject.toml config: `project`."], cmd="pip install -e '.[test]'")


def cause_dependency_resolution(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    if eco in ("python", "docker"):
        (a, av), (b, bv) = rng.sample(PY_PKGS, 2)
        if rng.random() < 0.3:
            return Cause("install", ["Updating dependencies", "Resolving dependencies...", "",
                                     f"Because {ctx.repo} depends on both {a} (^{av}) and {b} (>={bv},<{int(bv.split('.')[0]) + 1})"
                                     f" which depends on {a} (<{av.split('.')[0]}.0), version solving failed.", "",
                                     "  SolverProblemError"], cmd="poetry install --no-interaction")
        return Cause("install", [f"ERROR: Cannot install -r requirements.txt (line {rng.randint(2, 30)}) and {a}=={av} because these package versions have conflicting dependencies.",
                                 "", "The conflict is caused by:", f"    The user requested {a}=={av}",
                                 f"    {b} {bv} depends on {a}<{av.split('.')[0]}.0 and >={int(av.split('.')[0]) - 1}.0", "",
                                 "To fix this you could try to:", "1. loosen the range of package versions you've specified",
                                 "2. remove package versions to allow pip to attempt to solve the dependency conflict", "",
                                 "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts"])
    if eco == "node":
        (a, av), (b, bv) = rng.sample(NPM_PKGS, 2)
        return Cause("install", ["npm ERR! code ERESOLVE", "npm ERR! ERESOLVE unable to resolve dependency tree", "npm ERR! ",
                                 f"npm ERR! While resolving: {ctx.repo}@1.0.0", f"npm ERR! Found: {a}@{av}", f"npm ERR! node_modules/{a}",
                                 f"npm ERR!   {a}@\"^{av}\" from the root project", "npm ERR! ", "npm ERR! Could not resolve dependency:",
                                 f"npm ERR! peer {a}@\"^{int(av.split('.')[0]) - 1}.0.0\" from {b}@{bv}", f"npm ERR! node_modules/{b}",
                                 "npm ERR! ", "npm ERR! Fix the upstream dependency conflict, or retry",
                                 "npm ERR! this command with --force or --legacy-peer-deps", "npm ERR! to accept an incorrect (and potentially broken) dependency resolution."])
    if eco == "gradle":
        return Cause("build", ["FAILURE: Build failed with an exception.", "", "* What went wrong:",
                               "Execution failed for task ':compileJava'.", "> Could not resolve all files for configuration ':compileClasspath'.",
                               "   > Conflict found for the following module:",
                               f"       - com.google.guava:guava between versions 33.2.1-jre and 31.{rng.randint(0, 1)}-jre"])
    if eco == "maven":
        return Cause("build", ["[WARNING] Rule 0: org.apache.maven.enforcer.rules.dependency.DependencyConvergence failed with message:",
                               "Failed while enforcing releasability.", "", "Dependency convergence error for com.fasterxml.jackson.core:jackson-databind:jar:2.17.2 paths to dependency are:",
                               f"+-{ctx.package}:{ctx.repo}:2.4.0-SNAPSHOT", "  +-com.fasterxml.jackson.core:jackson-databind:jar:2.17.2",
                               "and", f"+-{ctx.package}:{ctx.repo}:2.4.0-SNAPSHOT", "  +-io.confluent:kafka-avro-serializer:jar:7.6.1",
                               "    +-com.fasterxml.jackson.core:jackson-databind:jar:2.14.2",
                               f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-enforcer-plugin:3.5.0:enforce (enforce) on project {ctx.repo}: ",
                               "[ERROR] Rule 0: org.apache.maven.enforcer.rules.dependency.DependencyConvergence failed with message:"],
                     label="build_config")  # the build's own enforcer rule
    if eco == "rust":
        c, v = rng.choice(CRATES)
        return Cause("build", ["    Updating crates.io index", f"error: failed to select a version for `{c}`.",
                               f"    ... required by package `{ctx.package} v0.4.0 ({ctx.workdir})`",
                               f"versions that meet the requirements `^{v}` are: {v}", "",
                               "all possible versions conflict with previously selected packages.", "",
                               f"  previously selected package `{c} v{v.split('.')[0]}.{max(0, int(v.split('.')[1]) - 3)}.0`",
                               f"    ... which satisfies dependency `{c} = \"={v.split('.')[0]}.{max(0, int(v.split('.')[1]) - 3)}.0\"` of package `{rng.choice(CRATES)[0]} v0.9.1`", "",
                               f"failed to select a version for `{c}` which could resolve this conflict"], exit_code=101)
    if eco == "go":
        mod, ver = rng.choice(GO_MODS)
        return Cause("install", [f"go: {ctx.package} imports", f"\t{mod}: {mod}@{ver}: reading {mod}/go.mod at revision {ver}: unknown revision {ver}"] if rng.random() < 0.5 else
                     [f"go: inconsistent vendoring in {ctx.workdir}:", f"\t{mod}@{ver}: is explicitly required in go.mod, but not marked as explicit in vendor/modules.txt", "",
                      "\tTo ignore the vendor directory, use -mod=readonly or -mod=mod.", "\tTo sync the vendor directory, run:", "\t\tgo mod vendor"])
    return Cause("install", ["The following packages have unmet dependencies:",
                             f" libssl-dev : Depends: libssl3 (= 3.0.2-0ubuntu1.{rng.randint(10, 16)}) but 3.0.2-0ubuntu1.{rng.randint(17, 19)} is to be installed",
                             "E: Unable to correct problems, you have held broken packages."], exit_code=100)


def cause_dependency_missing(ctx: Ctx) -> Cause:
    rng = ctx.rng
    eco = ctx.eco
    if eco in ("python", "docker"):
        pkg, ver = rng.choice(PY_PKGS)
        if rng.random() < 0.5:
            mod = rng.choice(("boto3", "yaml", "redis", "orjson", "structlog", "tenacity", "httpx", "dateutil"))
            f = rng.choice(MODULES)
            return Cause("test", [banner("ERRORS"), banner(f"ERROR collecting tests/test_{f}.py", "_"),
                                  f"ImportError while importing test module '{ctx.workdir}/tests/test_{f}.py'.",
                                  "Hint: make sure your test modules/packages have valid Python names.", "Traceback:",
                                  "/usr/local/lib/python3.12/importlib/__init__.py:90: in import_module",
                                  "    return _bootstrap._gcd_import(name[level:], package, level)",
                                  f"tests/test_{f}.py:{rng.randint(1, 12)}: in <module>", f"    import {mod}",
                                  f"E   ModuleNotFoundError: No module named '{mod}'", banner("short test summary info"),
                                  f"ERROR tests/test_{f}.py", "!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!",
                                  banner(f"1 error in {rng.randint(1, 9)}.{rng.randint(10, 99)}s")], exit_code=2)
        bad = f"{int(ver.split('.')[0]) + rng.randint(1, 3)}.{rng.randint(0, 9)}"
        return Cause("install", [f"ERROR: Could not find a version that satisfies the requirement {pkg}=={bad} (from versions: {ver.rsplit('.', 1)[0]}.0, {ver})",
                                 f"ERROR: No matching distribution found for {pkg}=={bad}"], label="dependency_resolution")
    if eco == "node":
        if rng.random() < 0.5:
            scope = ctx.owner.split("/")[0]
            return Cause("install", ["npm ERR! code E404", f"npm ERR! 404 Not Found - GET https://registry.npmjs.org/@{scope}%2f{rng.choice(('ui-kit', 'eslint-config', 'api-client'))} - Not found",
                                     "npm ERR! 404 ", f"npm ERR! 404  '@{scope}/ui-kit@^2.1.0' is not in this registry.",
                                     "npm ERR! 404 ", "npm ERR! 404 Note that you can also install from a", "npm ERR! 404 tarball, folder, http url, or git url."],
                         label="dependency_resolution")
        m = rng.choice(("dotenv", "@testing-library/jest-dom", "ts-node", "identity-obj-proxy"))
        return Cause("test", [f"FAIL src/{rng.choice(MODULES)}/index.test.tsx", "  ● Test suite failed to run", "",
                              f"    Cannot find module '{m}' from 'jest.setup.ts'", "",
                              "    Require stack:", f"      {ctx.workdir}/jest.setup.ts"])
    if eco in ("maven", "gradle"):
        art = rng.choice(("ledger-client", "billing-api", "common-proto", "auth-sdk"))
        ver = f"{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        if eco == "maven":
            return Cause("install", [f"[ERROR] Failed to execute goal on project {ctx.repo}: Could not resolve dependencies for project {ctx.package}:{ctx.repo}:jar:2.4.0-SNAPSHOT: Could not find artifact {ctx.package}:{art}:jar:{ver} in central (https://repo.maven.apache.org/maven2) -> [Help 1]"],
                         label="dependency_resolution")
        return Cause("install", ["* What went wrong:", "Could not resolve all files for configuration ':runtimeClasspath'.",
                                 f"> Could not find {ctx.package}:{art}:{ver}.", "  Searched in the following locations:",
                                 f"    - https://repo.maven.apache.org/maven2/{ctx.package.replace('.', '/')}/{art}/{ver}/{art}-{ver}.pom"],
                     label="dependency_resolution")
    if eco == "go":
        m = rng.choice(MODULES)
        return Cause("build", [f"internal/{m}/{m}.go:{rng.randint(3, 12)}:2: no required module provides package github.com/{rng.choice(('hashicorp', 'google', 'uber-go'))}/{rng.choice(('go-multierror', 'uuid', 'atomic'))}; to add it:",
                               "\tgo get github.com/hashicorp/go-multierror"])
    if eco == "rust":
        c = rng.choice(("serde_jsn", "tokio-utl", "hyper-tls2"))
        return Cause("build", ["    Updating crates.io index", f"error: no matching package named `{c}` found",
                               "location searched: registry `crates-io`", f"required by package `{ctx.package} v0.4.0 ({ctx.workdir})`"], exit_code=101,
                     label="dependency_resolution")
    if rng.random() < 0.5:
        return Cause("install", [f"E: Unable to locate package lib{rng.choice(('zstd', 'protobuf', 'uring', 'mbedtls'))}-dev"], exit_code=100)
    return Cause("build", ["-- Checking for module 'libzstd'", "--   Package 'libzstd', required by 'virtual:world', not found",
                           "CMake Error at /usr/share/cmake-3.25/Modules/FindPkgConfig.cmake:607 (message):", "  A required package was not found"])


def cause_test_timeout(ctx: Ctx, victim: TestRun) -> Cause:
    """A test that hung until the framework's own timeout stopped it (the job itself did not time out)."""
    rng = ctx.rng
    eco = ctx.eco
    if eco in ("python", "docker"):
        secs = rng.choice((60.0, 120.0, 300.0, 600.0))
        victim.message = f"Failed: Timeout >{secs}s"
        return Cause("test", ["", "+" * 34 + " Timeout " + "+" * 35,
                              "~" * 28 + f" Stack of MainThread (1403{rng.randint(10000000, 99999999)}) " + "~" * 28,
                              f'  File "{ctx.workdir}/src/{rng.choice(MODULES)}.py", line {rng.randint(20, 300)}, in wait_ready',
                              "    time.sleep(0.5)", "+" * 78, banner("FAILURES"), banner(victim.name, "_"),
                              f"E   Failed: Timeout >{secs}s", banner("short test summary info"),
                              f"FAILED {victim.test_id} - Failed: Timeout >{secs}s",
                              banner(f"1 failed, {rng.randint(40, 400)} passed in {secs + rng.randint(30, 200):.2f}s")])
    if eco == "node":
        victim.message = "thrown: \"Exceeded timeout of 5000 ms for a test."
        return Cause("test", [f"  ● {victim.test_id}", "", "    thrown: \"Exceeded timeout of 5000 ms for a test.",
                              "    Add a timeout value to this test to increase the timeout, if this is a long-running test. See https://jestjs.io/docs/api#testname-fn-timeout.\"",
                              "", f"Tests:       1 failed, {rng.randint(80, 400)} passed, {rng.randint(81, 401)} total"])
    if eco == "go":
        victim.message = "panic: test timed out after 10m0s"
        return Cause("test", ["panic: test timed out after 10m0s", "running tests:", f"\t{victim.name} (10m0s)", "",
                              f"goroutine {rng.randint(10, 300)} [chan receive, 9 minutes]:", "testing.(*T).Run(0xc000{0}, {{0x{1}, 0x12}}, 0x{1})".format(hexs(rng, 6), hexs(rng, 6)),
                              f"FAIL\t{ctx.package}/{victim.group}\t600.{rng.randint(100, 999)}s"], exit_code=1)
    if eco in ("maven", "gradle"):
        victim.message = f"java.util.concurrent.TimeoutException: {victim.name}() timed out after 30 seconds"
        return Cause("test", [f"[ERROR] {victim.test_id} -- Time elapsed: 30.01 s <<< ERROR!",
                              f"java.util.concurrent.TimeoutException: {victim.name}() timed out after 30 seconds",
                              "\tat org.junit.jupiter.engine.extension.TimeoutExceptionFactory.create(TimeoutExceptionFactory.java:29)",
                              f"[ERROR] Tests run: {rng.randint(40, 300)}, Failures: 0, Errors: 1, Skipped: 0"])
    if eco == "rust":
        victim.message = "test has been running for over 60 seconds"
        return Cause("test", [f"test {victim.test_id} has been running for over 60 seconds",
                              f"        TIMEOUT [ 180.003s] {ctx.package} {victim.test_id}",
                              f"     Summary [ 181.2s] {rng.randint(40, 200)} tests run: {rng.randint(40, 200)} passed, 1 timed out, 0 skipped",
                              "error: test run failed"], exit_code=100, cmd="cargo nextest run --profile ci")
    victim.message = "Timeout"
    return Cause("test", [f"{rng.randint(1, 40):2d}/{rng.randint(41, 90)} Test #{rng.randint(1, 40):2d}: {victim.test_id} ..............***Timeout 1500.02 sec",
                          "", "The following tests FAILED:", f"\t {rng.randint(1, 40)} - {victim.test_id} (Timeout)", "Errors while running CTest"], exit_code=8)


def cause_infra_runner_lost(ctx: Ctx) -> Cause:
    rng = ctx.rng
    p = ctx.provider
    stage = rng.choice(("build", "test", "test")) if ctx.eco != "python" else "test"
    if p == "github":
        return Cause(stage, [], exit_code=rng.choice((None, 143)), hang=True,
                     provider_tail=[rng.choice((
                         "##[error]The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.",
                         f"##[error]The {'self-hosted' if ctx.runner_name.startswith('gh-runner') else 'hosted'} runner: {ctx.runner_name} lost communication with the server. Verify the machine is running and has a healthy network connection. Anything in your workflow that terminates the runner process, starves it for CPU/Memory, or blocks its network access can cause this error.")),
                         "##[error]The operation was canceled."])
    if p == "gitlab":
        return Cause(stage, [], exit_code=None, hang=True, provider_tail=[rng.choice((
            f"ERROR: Job failed (system failure): pod \"{ctx.runner_name}\" status is \"Failed\"",
            "ERROR: Job failed (system failure): aborted: terminated",
            f"ERROR: Job failed (system failure): error during connect: Post \"http://docker:2375/v1.43/containers/{hexs(rng, 64)}/wait\": EOF"))])
    if p == "jenkins":
        agent = ctx.runner_name
        return Cause(stage, [], exit_code=None, hang=True, provider_tail=[
            f"Cannot contact {agent}: java.lang.InterruptedException",
            rng.choice((f"Agent {agent} was marked offline: Connection was broken", "Agent went offline during the build")),
            f"ERROR: Issue with creating launcher for agent {agent}. The agent has not been fully initialized yet",
            f"hudson.remoting.ChannelClosedException: Channel \"hudson.remoting.Channel@{hexs(rng, 8)}:{agent}\": Remote call on {agent} failed. The channel is closing down or has closed down"])
    return Cause(stage, [], exit_code=None, hang=True, provider_tail=[
        rng.choice(("Received \"killed\" signal", "Unexpected infrastructure failure: the machine executing this job was terminated (spot instance reclaimed)")),
        "", "Task lost: the executor stopped responding. Rerun the job; if this keeps happening contact CircleCI support."])


def cause_infra_timeout(ctx: Ctx, minutes: int) -> Cause:
    rng = ctx.rng
    p = ctx.provider
    stage = rng.choice(("build", "test", "test")) if ctx.eco != "python" else "test"
    if p == "github":
        tail = [f"##[error]The job running on runner {ctx.runner_name} has exceeded the maximum execution time of {minutes} minutes.",
                "##[error]The operation was canceled."]
    elif p == "gitlab":
        dur = f"{minutes // 60}h{minutes % 60}m0s" if minutes >= 60 else f"{minutes}m0s"
        tail = [f"ERROR: Job failed: execution took longer than {dur} seconds"]
    elif p == "jenkins":
        tail = [f"Build timed out (after {minutes} minutes). Marking the build as failed.", "Sending interrupt signal to process",
                "Terminated", "script returned exit code 143"]
    else:
        tail = [f"Too long with no output (exceeded {min(minutes, 10)}m0s): context deadline exceeded"]
    return Cause(stage, [], exit_code=None if p != "jenkins" else 143, conclusion="timed_out", hang=True, provider_tail=tail)


def cause_unknown(ctx: Ctx) -> Cause:
    rng = ctx.rng
    return Cause("post", rng.choice(([f"Checking release notes for v{rng.randint(1, 4)}.{rng.randint(0, 20)}.0 ...", "release gate: not satisfied"],
                                     ["==> comparing generated files", f"{rng.randint(1, 5)} generated file(s) differ from the committed version"],
                                     [f"verify: step {rng.randint(2, 9)} returned {rng.randint(2, 5)}", "see above"])),
                 exit_code=rng.choice((1, 2, 3)), title="Verify release", cmd="./scripts/verify-release.sh")


SIMPLE_CAUSES: dict[str, CauseFn] = {
    "network": cause_network, "rate_limit": cause_rate_limit, "docker_registry": cause_docker_registry,
    "cache_corruption": cause_cache_corruption, "disk_full": cause_disk_full, "oom": cause_oom, "crash": cause_crash,
    "compilation_error": cause_compilation, "lint_style": cause_lint, "build_config": cause_build_config,
    "dependency_resolution": cause_dependency_resolution, "dependency_missing": cause_dependency_missing,
    "infra_runner_lost": cause_infra_runner_lost, "unknown": cause_unknown,
}

# Stages in the order a job runs them; a cause at stage S means every earlier stage succeeded.
STAGES = ("pre", "checkout", "setup", "install", "lint", "build", "test", "post")


# ------------------------------------------------------------------------------- platform framing

TOOLCHAIN = {
    "python": ("actions/setup-python@v5", {"python-version": "3.12", "cache": "pip"}, "Successfully set up CPython (3.12.{v})"),
    "docker": ("docker/setup-buildx-action@v3", {"driver-opts": "network=host"}, "Using buildx version v0.16.{v}"),
    "node": ("actions/setup-node@v4", {"node-version": "20", "cache": "npm"}, "Found in cache @ /opt/hostedtoolcache/node/20.15.{v}/x64"),
    "maven": ("actions/setup-java@v4", {"distribution": "temurin", "java-version": "17", "cache": "maven"}, "Java configuration:\n  Distribution: temurin\n  Version: 17.0.11+9.{v}"),
    "gradle": ("actions/setup-java@v4", {"distribution": "temurin", "java-version": "17", "cache": "gradle"}, "Java configuration:\n  Distribution: temurin\n  Version: 17.0.11+9.{v}"),
    "go": ("actions/setup-go@v5", {"go-version-file": "go.mod"}, "Setup go version spec 1.22.{v}\nFound in cache @ /opt/hostedtoolcache/go/1.22.{v}/x64"),
    "rust": ("dtolnay/rust-toolchain@stable", {"components": "clippy, rustfmt"}, "info: default toolchain set to 'stable-x86_64-unknown-linux-gnu'\n  stable-x86_64-unknown-linux-gnu unchanged - rustc 1.79.{v} (129f3b996 2024-06-10)"),
    "cmake": ("lukka/get-cmake@latest", {"cmakeVersion": "3.29"}, "cmake version 3.29.{v}"),
}


def checkout_lines(ctx: Ctx) -> list[str]:
    rng = ctx.rng
    sha = ctx.sha
    p = ctx.provider
    if p == "github":
        return [f"Syncing repository: {ctx.full}", "##[group]Getting Git version info", f"Working directory is '{ctx.workdir}'",
                "[command]/usr/bin/git version", "git version 2.45.2", "##[endgroup]",
                f"Temporarily overriding HOME='/home/runner/work/_temp/{hexs(rng, 8)}-{hexs(rng, 4)}' before making global git config changes",
                "Adding repository directory to the temporary git global config as a safe directory",
                f"[command]/usr/bin/git config --global --add safe.directory {ctx.workdir}", f"Deleting the contents of '{ctx.workdir}'",
                "##[group]Initializing the repository", f"[command]/usr/bin/git init {ctx.workdir}",
                "hint: Using 'master' as the name for the initial branch. This default branch name", f"Initialized empty Git repository in {ctx.workdir}/.git/",
                f"[command]/usr/bin/git remote add origin https://github.com/{ctx.full}", "##[endgroup]",
                "##[group]Fetching the repository",
                f"[command]/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --no-recurse-submodules --depth=1 origin +{sha}:refs/remotes/origin/{ctx.branch}"]
    if p == "jenkins":
        url = f"https://git.example.com/{ctx.full}.git"
        return ["The recommended git tool is: NONE", "using credential github-app-ci", "Cloning the remote Git repository",
                f"Cloning repository {url}", f" > git init {ctx.workdir} # timeout=10", f"Fetching upstream changes from {url}",
                " > git --version # timeout=10", " > git --version # 'git version 2.39.2'",
                f" > git fetch --tags --force --progress -- {url} +refs/heads/*:refs/remotes/origin/* # timeout=10"]
    if p == "circleci":
        return ["#!/bin/sh", "set -e", "Creating .ssh directory", "Adding the following entries to known_hosts:",
                f"github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{alnum(rng, 43)}", "",
                f"Cloning git repository - git clone --no-checkout \"git@github.com:{ctx.full}.git\" ."]
    return ["Fetching changes with git depth set to 20...", f"Initialized empty Git repository in {ctx.workdir}/.git/", "Created fresh repository."]


def checkout_done(ctx: Ctx) -> list[str]:
    sha = ctx.sha
    p = ctx.provider
    if p == "github":
        return [f" * [new ref]         {sha} -> origin/{ctx.branch}", "##[endgroup]", "##[group]Determining the checkout info", "##[endgroup]",
                "##[group]Checking out the ref", f"[command]/usr/bin/git checkout --progress --force -B {ctx.branch} refs/remotes/origin/{ctx.branch}",
                f"Switched to a new branch '{ctx.branch}'", f"branch '{ctx.branch}' set up to track 'origin/{ctx.branch}'.", "##[endgroup]",
                "[command]/usr/bin/git log -1 --format=%H", sha]
    if p == "jenkins":
        return [f"Checking out Revision {sha} (refs/remotes/origin/{ctx.branch})", " > git config core.sparsecheckout # timeout=10",
                f" > git checkout -f {sha} # timeout=10", f"Commit message: \"{ctx.rng.choice(('Fix rounding in totals', 'Bump deps', 'Refactor cache eviction', 'Add retry to uploader', 'Merge pull request #%d' % ctx.rng.randint(100, 4000)))}\""]
    if p == "circleci":
        return ["Cloning into '.'...", "Warning: Permanently added the ED25519 host key for IP address '140.82.112.4' to the list of known hosts.", "",
                f"HEAD is now at {sha[:7]} {ctx.rng.choice(('Fix flaky upload test', 'Update lockfile', 'Tidy logging'))}"]
    return [f"Checking out {sha[:8]} as detached HEAD (ref is {ctx.branch})...", "Skipping Git submodules setup"]


def setup_lines(ctx: Ctx) -> tuple[Step, Step]:
    """(toolchain step, cache restore step)."""
    rng = ctx.rng
    p = ctx.provider
    key = f"{ctx.eco}-deps-{'Linux-' if p == 'github' else ''}{hexs(rng, 64) if p == 'github' else hexs(rng, 16)}"
    mb = rng.randint(20, 1500)
    if p == "github":
        action, with_, text = TOOLCHAIN[ctx.eco]
        tool = Step(f"Set up {ctx.eco}", text.format(v=rng.randint(1, 9)).split("\n"), action=action, with_=dict(with_))
        if rng.random() < 0.3:
            cache = Step("Restore cache", [f"Cache not found for input keys: {key}"], action="actions/cache@v4",
                         with_={"path": "~/.cache", "key": key})
        else:
            cache = Step("Restore cache", [f"Cache Size: ~{mb} MB ({mb * 1048576 + rng.randint(0, 999999)} B)",
                                           f"/usr/bin/tar -xf /home/runner/work/_temp/{hexs(rng, 8)}-{hexs(rng, 4)}/cache.tzst -P -C {ctx.workdir} --use-compress-program unzstd",
                                           f"Received {mb * 1048576} of {mb * 1048576} (100.0%), {rng.randint(20, 200)}.{rng.randint(0, 9)} MBs/sec",
                                           "Cache restored successfully", f"Cache restored from key: {key}"],
                         action="actions/cache@v4", with_={"path": "~/.cache", "key": key})
        return tool, cache
    if p == "circleci":
        tool = Step("Spin up environment", [f"Build-agent version 1.0.{rng.randint(200000, 299999)}-{hexs(rng, 8)} (2026-01-0{rng.randint(1, 9)}T10:00:00+0000)",
                                            "System information:", " Server Version: 24.0.9", " Storage Driver: overlay2", "  Backing Filesystem: xfs",
                                            " Cgroup Driver: cgroupfs", " Kernel Version: 5.15.0-1057-aws", " Operating System: Ubuntu 22.04.4 LTS",
                                            " OSType: linux", " Architecture: x86_64", "", f"Starting container {ctx.image}",
                                            f"{ctx.image}: using image {ctx.image.split(':')[0]}@sha256:{hexs(rng, 64)}",
                                            f"Time to create container: {rng.randint(1, 9)}s", "Running job"])
        cache = Step("Restoring cache", [f"Found a cache from build {rng.randint(1000, 99999)} at v1-{key}", f"Size: {mb} MiB",
                                         "Cached paths:", f"  * /home/circleci/.cache/{ctx.eco}", "", "Downloading cache archive...",
                                         "Validating cache...", "", "Unarchiving cache..."])
        return tool, cache
    if p == "jenkins":
        tool = Step("Tool Install", [f"Setting up {ctx.eco} toolchain from /opt/tools/{ctx.eco}", f"[{ctx.repo}_main] $ /opt/tools/{ctx.eco}/bin/env-check --quiet"])
        cache = Step("Restore cache", [f"Restoring cache from s3://ci-cache/{ctx.repo}/{key}.tar.zst ({mb} MB)", "Cache restored."])
        return tool, cache
    tool = Step("Prepare", [])
    cache = Step("Restoring cache", [f"Checking cache for {key}-protected...",
                                     f"Downloading cache from https://storage.googleapis.com/gitlab-runner-cache/project/{rng.randint(1000, 99999)}/{key}-protected  ETag=\"{hexs(rng, 32)}\"",
                                     "Successfully extracted cache"])
    return tool, cache


def post_success(ctx: Ctx) -> Step:
    rng = ctx.rng
    if ctx.eco == "docker" or rng.random() < 0.15:
        return Step("Push image", docker_push_lines(ctx), cmd=f"docker push {image_ref(ctx)}")
    if rng.random() < 0.5:
        return Step("Upload coverage", [f"info - 2026-01-01 10:00:00,000 -- ci service found: {ctx.provider}",
                                        f"info - 2026-01-01 10:00:01,000 -- Found {rng.randint(1, 4)} coverage files to report",
                                        "info - 2026-01-01 10:00:02,000 -- Process Upload complete"], cmd="codecov upload-process --fail-on-error")
    return Step("Archive artifacts", [f"Uploading {rng.randint(1, 9)} files ({rng.randint(1, 90)}.{rng.randint(0, 9)} MB)", "Artifacts uploaded."],
                cmd="tar czf dist.tgz dist/ && ./scripts/upload-artifacts.sh dist.tgz")


@dataclasses.dataclass
class Rendered:
    lines: list[str]
    exit_code: int | None
    conclusion: str
    tests_ran: bool
    stage: str | None
    label: str | None = None  # the cause's own label (Cause.label), when it differs from the category asked for


def _gh_run_header(step: Step, ctx: Ctx) -> list[str]:
    if step.action:
        out = [f"##[group]Run {step.action}"]
        if step.with_:
            out.append("with:")
            out += [f"  {k}: {v}" for k, v in step.with_.items()]
        out.append("##[endgroup]")
        return out
    cmd = step.cmd or "true"
    out = [f"##[group]Run {cmd.splitlines()[0]}", *cmd.splitlines(), "shell: /usr/bin/bash -e {0}"]
    if ctx.eco == "python":
        out += ["env:", "  pythonLocation: /opt/hostedtoolcache/Python/3.12.4/x64",
                "  LD_LIBRARY_PATH: /opt/hostedtoolcache/Python/3.12.4/x64/lib"]
    elif ctx.eco in ("maven", "gradle"):
        out += ["env:", "  JAVA_HOME: /opt/hostedtoolcache/Java_Temurin-Hotspot_jdk/17.0.11-9/x64"]
    out.append("##[endgroup]")
    return out


def _render_github(ctx: Ctx, steps: list[Step], failing: int | None, cause: Cause | None, exit_code: int | None) -> list[object]:
    rng = ctx.rng
    out: list[object] = []
    if cause is not None and cause.stage == "pre":
        return list(cause.lines)
    out += [f"Current runner version: '2.32{rng.randint(0, 1)}.{rng.randint(0, 3)}'"]
    if "self-hosted" in ctx.image:
        out += [f"Runner name: '{ctx.runner_name}'", "Runner group name: 'Default'", f"Machine name: '{ctx.runner_name}'"]
    else:
        out += ["##[group]Operating System", "Ubuntu", "22.04.4", "LTS", "##[endgroup]", "##[group]Runner Image",
                "Image: ubuntu-22.04", f"Version: 20260{rng.randint(101, 112)}.{rng.randint(1, 9)}.0", "##[endgroup]"]
    out += ["##[group]GITHUB_TOKEN Permissions", "Contents: read", "Metadata: read", "##[endgroup]", "Secret source: Actions",
            "Prepare workflow directory", "Prepare all required actions", "Getting action download info"]
    for s in steps:
        if s.action:
            out.append(f"Download action repository '{s.action}' (SHA:{hexs(rng, 40)})")
    out.append(f"Complete job name: {ctx.job_name}")
    for i, s in enumerate(steps):
        out += _gh_run_header(s, ctx)
        out += s.lines
        if i == failing:
            assert cause is not None
            if cause.provider_tail is not None:
                out += cause.provider_tail
            elif s.action == "actions/checkout@v4":
                out += [f"The process '/usr/bin/git' failed with exit code {exit_code}", f"Waiting {rng.randint(10, 20)} seconds before trying again",
                        f"##[error]The process '/usr/bin/git' failed with exit code {exit_code}"]
            elif s.action is None and exit_code is not None:
                out.append(f"##[error]Process completed with exit code {exit_code}.")
            if cause.after and (cause.provider_tail is None):
                for a in cause.after:
                    out += _gh_run_header(a, ctx)
                    out += a.lines
            if cause.hang:
                return out
            break
    post = ["Post job cleanup."]
    if steps and steps[0].action == "actions/checkout@v4":
        post += ["[command]/usr/bin/git version", "git version 2.45.2",
                 f"Temporarily overriding HOME='/home/runner/work/_temp/{hexs(rng, 8)}-{hexs(rng, 4)}' before making global git config changes",
                 "[command]/usr/bin/git config --local --name-only --get-regexp core\\.sshCommand",
                 "[command]/usr/bin/git submodule foreach --recursive sh -c \"git config --local --name-only --get-regexp 'core\\.sshCommand' && git config --local --unset-all 'core.sshCommand' || :\""]
    post += ["Cleaning up orphan processes"]
    return out + post


def _gl_section(name: str, title: str) -> tuple[str, str, str]:
    return ("S", name, title)


def _render_gitlab(ctx: Ctx, steps: list[Step], failing: int | None, cause: Cause | None, exit_code: int | None) -> list[object]:
    rng = ctx.rng
    executor = "kubernetes" if "k8s" in ctx.runner_name else "docker"
    out: list[object] = [f"\x1b[0KRunning with gitlab-runner 17.{rng.randint(0, 6)}.{rng.randint(0, 3)} ({hexs(rng, 8)})\x1b[0;m",
                         f"\x1b[0K  on {ctx.runner_name} {alnum(rng, 8)}, system ID: s_{hexs(rng, 12)}\x1b[0;m",
                         _gl_section("prepare_executor", f"Preparing the \"{executor}\" executor"),
                         f"\x1b[0KUsing {'Kubernetes' if executor == 'kubernetes' else 'Docker'} executor with image {ctx.image} ...\x1b[0;m",
                         f"\x1b[0KPulling docker image {ctx.image} ...\x1b[0;m"]
    if cause is not None and cause.stage == "pre":
        out += [f"\x1b[0;33m{ln}\x1b[0;m" if ln.startswith("WARNING") else ln for ln in cause.lines]
        out.append(("E", "prepare_executor"))
        tail = cause.provider_tail or [f"ERROR: Job failed: exit code {exit_code}"]
        return out + [f"\x1b[31;1m{ln}\x1b[0;m" for ln in tail]
    out += [f"\x1b[0KUsing docker image sha256:{hexs(rng, 64)} for {ctx.image} with digest {ctx.image.split(':')[0]}@sha256:{hexs(rng, 64)} ...\x1b[0;m",
            ("E", "prepare_executor"), _gl_section("prepare_script", "Preparing environment"),
            f"Running on runner-{alnum(rng, 8).lower()}-project-{rng.randint(1000, 99999)}-concurrent-{rng.randint(0, 3)} via {ctx.runner_name}...",
            ("E", "prepare_script")]
    in_script = False
    failed = False
    for i, s in enumerate(steps):
        if s.title == "Checkout":
            out.append(_gl_section("get_sources", "Getting source from Git repository"))
            out += s.lines
            if i != failing:
                out.append(("E", "get_sources"))
        elif s.title in ("Restoring cache", "Restore cache"):
            out.append(_gl_section("restore_cache", "Restoring cache"))
            out += s.lines
            if i != failing:
                out.append(("E", "restore_cache"))
        elif s.title == "Prepare":
            continue
        else:
            if not in_script:
                out += [_gl_section("step_script", "Executing \"step_script\" stage of the job script"),
                        f"\x1b[0KUsing docker image sha256:{hexs(rng, 64)} for {ctx.image} with digest {ctx.image.split(':')[0]}@sha256:{hexs(rng, 64)} ...\x1b[0;m"]
                in_script = True
            for c in (s.cmd or "true").splitlines():
                out.append(f"\x1b[32;1m$ {c}\x1b[0;m")
            out += s.lines
        if i == failing:
            failed = True
            break
    if cause is not None and cause.hang:
        return out + [f"\x1b[31;1m{ln}\x1b[0;m" for ln in (cause.provider_tail or [])]
    if in_script:
        out.append(("E", "step_script"))
    if failed:
        assert cause is not None
        if STAGES.index(cause.stage) >= STAGES.index("test"):
            found = ["reports/junit.xml: found 1 matching artifact files and directories",
                     "\x1b[32;1mUploading artifacts as \"junit\" to coordinator... 201 Created\x1b[0;m"]
        else:
            found = ["\x1b[0;33mWARNING: reports/junit.xml: no matching files. Ensure that the artifact path is relative to the working directory (/builds/%s)\x1b[0;m" % ctx.full,
                     "\x1b[31;1mERROR: No files to upload                         \x1b[0;m"]
        out += [_gl_section("upload_artifacts_on_failure", "Uploading artifacts for failed job"), "\x1b[32;1mUploading artifacts...\x1b[0;m",
                *found, ("E", "upload_artifacts_on_failure")]
    else:
        out += [_gl_section("archive_cache", "Saving cache for successful job"), "\x1b[32;1mCreating cache default-protected...\x1b[0;m",
                "Uploading cache.zip to https://storage.googleapis.com/gitlab-runner-cache/project/cache.zip", "\x1b[32;1mCreated cache\x1b[0;m",
                ("E", "archive_cache")]
    out += [_gl_section("cleanup_file_variables", "Cleaning up project directory and file based variables"), ("E", "cleanup_file_variables")]
    if failed:
        assert cause is not None
        tail = cause.provider_tail or [f"ERROR: Job failed: exit code {exit_code if exit_code is not None else 1}"]
        out += [f"\x1b[31;1m{ln}\x1b[0;m" for ln in tail]
    else:
        out.append("\x1b[32;1mJob succeeded\x1b[0;m")
    return out


def _render_jenkins(ctx: Ctx, steps: list[Step], failing: int | None, cause: Cause | None, exit_code: int | None) -> list[object]:
    rng = ctx.rng
    out: list[object] = [rng.choice(("Started by an SCM change", "Started by user Jenkins Admin", "Branch indexing", "Started by timer")),
                         f"Obtained Jenkinsfile from git https://git.example.com/{ctx.full}.git"]
    if cause is not None and cause.stage == "pre":
        return out + list(cause.lines) + ["", "Finished: FAILURE"]
    out += ["[Pipeline] Start of Pipeline", "[Pipeline] node", f"Running on {ctx.runner_name} in {ctx.workdir}", "[Pipeline] {"]
    failed = False
    for i, s in enumerate(steps):
        stage = "Declarative: Checkout SCM" if s.title == "Checkout" else s.title
        out += ["[Pipeline] stage", f"[Pipeline] {{ ({stage})"]
        if failed:
            out += [f"Stage \"{stage}\" skipped due to earlier failure(s)", "[Pipeline] }", "[Pipeline] // stage"]
            continue
        if s.title == "Checkout":
            out.append("[Pipeline] checkout")
        elif s.cmd:
            for c in s.cmd.splitlines():
                out += ["[Pipeline] sh", f"+ {c}"]
        out += s.lines
        if i == failing:
            failed = True
            assert cause is not None
            if cause.hang:
                return out + list(cause.provider_tail or []) + ["Finished: FAILURE"]
            if s.title == "Checkout":
                out += ["ERROR: Error cloning remote repo 'origin'", f"hudson.plugins.git.GitException: Command \"git fetch --tags --force --progress\" returned status code {exit_code}:"]
        out += ["[Pipeline] }", "[Pipeline] // stage"]
    out += ["[Pipeline] stage", "[Pipeline] { (Declarative: Post Actions)"]
    if ctx.eco in ("maven", "gradle", "cmake"):
        out += ["[Pipeline] junit", "Recording test results",
                "[Checks API] No suitable checks publisher found." if rng.random() < 0.5 else "[Checks API] Published check: Tests"]
    out += ["[Pipeline] cleanWs", "[WS-CLEANUP] Deleting project workspace...", "[WS-CLEANUP] done", "[Pipeline] }", "[Pipeline] // stage",
            "[Pipeline] }", "[Pipeline] // node", "[Pipeline] End of Pipeline"]
    if failed:
        assert cause is not None
        if cause.provider_tail:
            out += cause.provider_tail
        elif exit_code is not None:
            out.append(f"ERROR: script returned exit code {exit_code}")
        out.append("Finished: FAILURE")
    else:
        out.append("Finished: SUCCESS")
    return out


def _render_circleci(ctx: Ctx, steps: list[Step], failing: int | None, cause: Cause | None, exit_code: int | None) -> list[object]:
    out: list[object] = []
    if cause is not None and cause.stage == "pre":
        return ["Build-agent version 1.0.%d" % ctx.rng.randint(200000, 299999), "Error: config compilation failed", *cause.lines]
    env_done = False
    order = sorted(range(len(steps)), key=lambda k: 0 if steps[k].title == "Spin up environment" else 1)
    for i in order:
        s = steps[i]
        out.append(s.title if s.title != "Checkout" else "Checkout code")
        if s.title == "Spin up environment":
            out += s.lines
            if not env_done:
                out += ["", "Preparing environment variables", "Using build environment variables:", "  BASH_ENV=/tmp/.bash_env-%s" % hexs(ctx.rng, 24),
                        "  CI=true", "  CIRCLECI=true", f"  CIRCLE_BRANCH={ctx.branch}", f"  CIRCLE_JOB={ctx.job_name}",
                        f"  CIRCLE_PROJECT_REPONAME={ctx.repo}", f"  CIRCLE_SHA1={ctx.sha}"]
                env_done = True
            continue
        if s.cmd:
            out.append("#!/bin/bash -eo pipefail")
            out += s.cmd.splitlines()
        out += s.lines
        if i == failing:
            assert cause is not None
            if cause.provider_tail is not None:
                out += cause.provider_tail
                if cause.hang:
                    return out
            out += ["", f"Exited with code exit status {exit_code if exit_code is not None else 1}"]
            if cause.after:
                for a in cause.after:
                    out.append(a.title)
                    out += a.lines
            out.append(f"CircleCI received exit code {exit_code if exit_code is not None else 1}")
            return out
    return out


RENDERERS = {"github": _render_github, "gitlab": _render_gitlab, "jenkins": _render_jenkins, "circleci": _render_circleci}


_gap_rng = Random("line-gaps")
_GAPS = [0.02 + (_gap_rng.expovariate(1.0) ** 3 if _gap_rng.random() < 0.9 else 20 + _gap_rng.random() * 200) for _ in range(1009)]


def finalize(items: list[object], provider: str, t0: float, t1: float, *, hang_tail: int = 0,
             hang_at: float = 0.6, stamps: bool = False) -> list[str]:
    """Give every line its time (GitHub prefixes, Jenkins timestamper, GitLab section markers).

    With ``hang_tail`` the last lines arrive at ``t1`` after a silence: the job stalled at ``hang_at`` of its run.
    """
    n = len(items)
    body = n - hang_tail
    body_end = t0 + (t1 - t0) * (hang_at if hang_tail else 0.995)
    span = max(0.0, body_end - t0 - 1.0)
    # bursty clock: most lines arrive together, a few after a pause (a download, a slow test)
    off = int(t0 * 1000) % len(_GAPS)
    gaps = (_GAPS * (body // len(_GAPS) + 2))[off:off + body]
    cum = list(itertools.accumulate(gaps))
    scale = span / cum[-1] if cum and cum[-1] > 0 else 0.0
    gh = provider == "github"
    out: list[str] = []
    append = out.append
    last_s = -1
    stamp = ""
    for i, it in enumerate(items):
        if type(it) is str and not (gh or stamps):
            append(it)
            continue
        t = t0 + 1.0 + cum[i] * scale if i < body else t1 - 0.2 * (n - i)
        if type(it) is tuple:
            if it[0] == "S":
                line = f"section_start:{int(t)}:{it[1]}\r\x1b[0K\x1b[0K\x1b[36;1m{it[2]}\x1b[0;m"
            else:
                line = f"section_end:{int(t)}:{it[1]}\r\x1b[0K"
        else:
            line = it  # type: ignore[assignment]
        if gh or stamps:
            s = int(t)
            if s != last_s:
                last_s = s
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
            if gh:
                line = f"{stamp}.{int((t - s) * 10_000_000):07d}Z {line}"
            else:
                line = f"[{stamp}.{int((t - s) * 1000):03d}Z] {line}"
        append(line)
    return out


# ------------------------------------------------------------------------------------- job assembly

# Output lines per test case the tools print (used to size a job's log to its target length).
_LINES_PER_TEST = {"python": 1.0, "docker": 1.0, "node": 1.1, "maven": 0.7, "gradle": 0.5, "go": 2.0, "rust": 1.0, "cmake": 2.0}


def render_job(ctx: Ctx, category: str | None, tests: list[TestRun], target_lines: int, t0: float, t1: float,
               *, timeout_minutes: int = 30, stamps: bool = False) -> Rendered:
    """The whole log of one job attempt, ending the way ``category`` says, plus the verdict."""
    rng = ctx.rng
    cause: Cause | None
    if category is None:
        cause = None
    elif category == "test_failure":
        cause = Cause("test", [])
    elif category == "test_timeout":
        victims = [t for t in tests if t.outcome == "error"]
        cause = cause_test_timeout(ctx, victims[0])
    elif category == "infra_timeout":
        cause = cause_infra_timeout(ctx, timeout_minutes)
    else:
        cause = SIMPLE_CAUSES[category](ctx)
    if cause is not None and ctx.provider != "github" and any("##[" in ln for ln in cause.lines):
        # GitHub-only wording drawn for another platform: fall back to a platform-neutral cause
        cause = cause_rate_limit(ctx) if category == "rate_limit" else cause
        if any("##[" in ln for ln in cause.lines):
            cause.lines = [ln.replace("##[error]", "ERROR: ").replace("##[warning]", "WARNING: ") for ln in cause.lines]
    stage = cause.stage if cause is not None else None
    stop = STAGES.index(stage) if stage is not None else len(STAGES)

    # size the log: fixed framing ~60 lines, the rest split over install / build / tests
    budget = max(20, target_lines - 70)
    eco = ctx.eco
    has_build = eco not in ("python",)
    lpt = _LINES_PER_TEST.get(eco, 1.0)
    test_share = 0.6 if has_build else 0.75
    n_tests = max(len(tests), min(8000, int(budget * test_share / lpt)))
    test_budget_used = int(n_tests * lpt)
    rest = max(10, budget - test_budget_used)
    n_install = max(4, int(rest * (0.35 if has_build else 1.0)))
    n_build = max(10, rest - n_install)

    steps: list[Step] = []
    stages: list[str] = []
    checkout = Step("Checkout", checkout_lines(ctx) + checkout_done(ctx),
                    action="actions/checkout@v4" if ctx.provider == "github" else None,
                    with_={"repository": ctx.full, "token": "***", "fetch-depth": "1"})
    tool, cache = setup_lines(ctx)
    install = install_step(ctx, n_install)
    if ctx.secrets:
        at = rng.randint(0, max(0, min(5, len(install.lines))))
        install.lines[at:at] = fake_secret_lines(rng, ctx)
    want_lint = category == "lint_style" or rng.random() < 0.3
    built = build_step(ctx, n_build) if has_build else None
    head: list[str] = []
    tail: list[str] = []
    runs_tests = stop >= STAGES.index("test")
    if runs_tests:
        head, tail = test_lines(ctx, tests, n_tests)

    plan: list[tuple[str, Step | None]] = [("checkout", checkout), ("setup", tool), ("setup", cache), ("install", install),
                                           ("lint", lint_step(ctx) if want_lint else None), ("build", built),
                                           ("test", Step("Test", head + tail, cmd=test_cmd(ctx))), ("post", post_success(ctx))]
    failing: int | None = None
    after: list[Step] = []
    for st, step in plan:
        idx = STAGES.index(st)
        if idx < stop:
            if step is not None:
                steps.append(step)
                stages.append(st)
            continue
        if idx > stop:
            break
        assert cause is not None
        if st == "setup" and step is tool and (cause.title or "").lower().find("cache") >= 0:
            steps.append(step)
            stages.append(st)
            continue
        if st == "setup" and step is cache and not (cause.title or "").lower().find("cache") >= 0:
            continue
        if st == "test":
            if category == "test_failure":
                lines = head + tail
            else:
                lines = head[: int(len(head) * cause.keep)] + cause.lines
            f = Step("Test", lines, cmd=cause.cmd or test_cmd(ctx))
            if category == "test_failure" and eco == "gradle":
                failed = [t for t in tests if t.outcome in ("failed", "error")]
                after.append(Step("Publish test report",
                                  [f"Found {len(tests)} test results, {len(failed)} failed"] + [f"  ❌ {t.test_id}: {(t.message or '').splitlines()[0]}" for t in failed],
                                  action="mikepenz/action-junit-report@v4" if ctx.provider == "github" else None,
                                  cmd=None if ctx.provider == "github" else "./scripts/junit-summary.sh build/test-results"))
        elif step is not None and st != "post" and cause.title is None:
            keep = step.lines[: int(len(step.lines) * cause.keep)]
            f = dataclasses.replace(step, lines=keep + cause.lines, cmd=cause.cmd or step.cmd)
            if st == "checkout":
                f.lines = checkout_lines(ctx) + cause.lines
        else:
            f = Step(cause.title or st.capitalize(), cause.lines, cmd=cause.cmd or (step.cmd if step else None) or "make " + st)
        steps.append(f)
        stages.append(st)
        failing = len(steps) - 1
        break
    if cause is not None and failing is None:  # a "pre" cause: nothing ran
        failing = None
    if cause is not None and after:
        cause.after = after

    exit_code = cause.exit_code if cause is not None else 0
    conclusion = cause.conclusion if cause is not None else "success"
    items = RENDERERS[ctx.provider](ctx, steps, failing, cause, exit_code)
    hang_tail = 0
    if cause is not None and cause.hang:
        hang_tail = max(1, len(cause.provider_tail or []))
    lines = finalize(items, ctx.provider, t0, t1, hang_tail=hang_tail, hang_at=0.3 + rng.random() * 0.5, stamps=stamps)
    tests_ran = cause is None or category in ("test_failure", "test_timeout") or stage == "post"
    return Rendered(lines, None if cause is None else exit_code, conclusion, tests_ran, stage,
                    None if cause is None else cause.label)
