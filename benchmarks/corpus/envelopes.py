"""Wrap a job's steps in each CI platform's log format, as the platform's "raw log" download shows it.

:func:`render` takes the :class:`~benchmarks.corpus.case.Case` (its name, ecosystem, project, how the job
ends) and what :func:`~benchmarks.corpus.case.run_case` returned, and gives the whole log text plus the
*failure chunk*: the 1-based first and last line of the failing step's own output in that text (line
numbers as ``sed -n Np`` counts them: split on ``\\n`` only; GitLab's and Travis's markers carry a bare
``\\r`` inside a line, which is not a line break).

Everything the platform adds (runner banners, checkout, timestamps, ids) is derived from the case name,
so the same steps render to the same bytes. Step durations are made up from that seed too, not measured:
only the timings the tools print themselves vary between builds.

What each platform prints was taken from the platforms' own logs and documentation; where a platform
prints nothing of its own (Travis when the VM is lost), the log just stops, as it does there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .case import Case, StepResult

__all__ = ["PLATFORMS", "Rendered", "render"]

PLATFORMS = ("github", "gitlab", "jenkins", "circleci", "travis")

#: the morning every job starts from; each case is placed up to ~30 days after it by its name
_EPOCH = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc).timestamp()

ESC = "\x1b"


@dataclass(frozen=True)
class Rendered:
    text: str  # the whole log, "\n"-separated, ending with "\n"
    first_line: int  # 1-based line of the failing step's first output line
    last_line: int  # ... and of its last


# --------------------------------------------------------------------------------------------- helpers


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def _hex(n: int, *parts: str) -> str:
    out = ""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(_digest(*parts, str(i))).hexdigest()
        i += 1
    return out[:n]


def _lines(text: str) -> list[str]:
    """A step's output as log lines: split on \\n only; no line for the final newline."""
    if not text:
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def _cmd_lines(run: str) -> list[str]:
    return run.strip("\n").split("\n")


class _Log:
    """Lines with the time each one was printed, and where the failure chunk is."""

    def __init__(self, start: float, rng: random.Random) -> None:
        self.t = start
        self.start = start
        self.rng = rng
        self.items: list[tuple[float, str]] = []
        self.first: int | None = None  # 0-based indexes while building
        self.last: int | None = None
        self.exit_at: int | None = None

    def add(self, *lines: str, gap: float = 0.0) -> None:
        """Lines printed together after ``gap`` seconds (plus a few ms each)."""
        self.t += gap
        for ln in (part for text in lines for part in text.split("\n")):
            self.t += self.rng.uniform(0.0005, 0.012)
            self.items.append((self.t, ln))

    def wait(self, seconds: float) -> None:
        self.t += seconds

    def output(self, text: str, seconds: float, *, failing: bool) -> None:
        """A step's output, spread over ``seconds``; the failing step's lines are the chunk."""
        lines = _lines(text)
        if failing:
            self.first = len(self.items) if lines else None
        n = max(1, len(lines))
        # bursty: most lines close together, a few after a pause
        weights = [self.rng.expovariate(1.0) ** 3 for _ in range(n)]
        scale = seconds / (sum(weights) or 1.0)
        for ln, w in zip(lines, weights):
            self.t += w * scale
            self.items.append((self.t, ln))
        if not lines:
            self.t += seconds
        if failing and lines:
            self.last = len(self.items) - 1

    def mark_exit(self) -> None:
        """The next line is the platform's verdict on the failing step (the chunk when it printed nothing)."""
        self.exit_at = len(self.items)

    def chunk(self) -> tuple[int, int]:
        if self.first is not None and self.last is not None:
            return self.first + 1, self.last + 1
        at = self.exit_at if self.exit_at is not None and self.exit_at < len(self.items) else len(self.items) - 1
        return at + 1, at + 1


@dataclass(frozen=True)
class _Env:
    """What a platform shows about the environment of an ecosystem's job."""

    image: str  # container image (GitLab, CircleCI)
    gh_action: tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]] | None  # setup action, with, lines
    travis: str  # Travis "language:"
    travis_setup: tuple[str, ...]  # commands Travis runs for the language, with their output


_ENVS: dict[str, _Env] = {
    "python": _Env("python:3.11-slim",
                   ("actions/setup-python@v5", (("python-version", "3.11"), ("check-latest", "false"),
                                                ("token", "***"), ("update-environment", "true"),
                                                ("allow-prereleases", "false")),
                    ("Installed versions", "Successfully set up CPython (3.11.9)")),
                   "python", ("$ source ~/virtualenv/python3.11/bin/activate", "$ python --version", "Python 3.11.9",
                              "$ pip --version",
                              "pip 24.0 from /home/travis/virtualenv/python3.11.9/lib/python3.11/site-packages/pip (python 3.11)")),
    "node": _Env("node:20-bookworm",
                 ("actions/setup-node@v4", (("node-version", "20"), ("always-auth", "false"), ("check-latest", "false"),
                                            ("token", "***")),
                  ("Found in cache @ /opt/hostedtoolcache/node/20.12.2/x64", "##[group]Environment details",
                   "node: v20.12.2", "npm: 10.5.0", "yarn: 1.22.22", "##[endgroup]")),
                 "node_js", ("$ nvm install 20", "Downloading and installing node v20.12.2...",
                             "Now using node v20.12.2 (npm v10.5.0)", "$ node --version", "v20.12.2", "$ npm --version",
                             "10.5.0", "$ nvm --version", "0.39.7")),
    "java": _Env("maven:3.9-eclipse-temurin-17",
                 ("actions/setup-java@v4", (("distribution", "temurin"), ("java-version", "17"),
                                            ("java-package", "jdk"), ("check-latest", "false"), ("server-id", "github"),
                                            ("server-username", "GITHUB_ACTOR"), ("server-password", "GITHUB_TOKEN"),
                                            ("overwrite-settings", "true"), ("job-status", "success"), ("token", "***")),
                  ("##[group]Installed distributions", "Resolved Java 17.0.11+9 from tool-cache",
                   "Setting Java 17.0.11+9 as the default", "Creating toolchains.xml for JDK version 17 from temurin",
                   "Writing to /home/runner/.m2/toolchains.xml", "", "Java configuration:", "  Distribution: temurin",
                   "  Version: 17.0.11+9", "  Path: /opt/hostedtoolcache/Java_Temurin-Hotspot_jdk/17.0.11-9/x64", "",
                   "##[endgroup]")),
                 "java", ("$ java -Xmx32m -version", 'openjdk version "17.0.11" 2024-04-16',
                          "OpenJDK Runtime Environment (build 17.0.11+9-Ubuntu-1ubuntu220.04)",
                          "OpenJDK 64-Bit Server VM (build 17.0.11+9-Ubuntu-1ubuntu220.04, mixed mode, sharing)",
                          "$ javac -J-Xmx32m -version", "javac 17.0.11")),
    "go": _Env("golang:1.22-bookworm",
               ("actions/setup-go@v5", (("go-version", "1.22"), ("check-latest", "false"), ("token", "***"),
                                        ("cache", "true")),
                ("Setup go version spec 1.22", "Found in cache @ /opt/hostedtoolcache/go/1.22.2/x64",
                 "Added go to the path", "Successfully set up Go version 1.22", "go version go1.22.2 linux/amd64", "",
                 "##[group]go env", "GOPATH='/home/runner/go'", "GOROOT='/opt/hostedtoolcache/go/1.22.2/x64'",
                 "##[endgroup]")),
               "go", ("$ gimme version", "v1.14.0", "$ go version", "go version go1.22.2 linux/amd64")),
    "rust": _Env("rust:1.78-bookworm",
                 ("dtolnay/rust-toolchain@stable", (("toolchain", "stable"),),
                  ("##[group]rustup toolchain install stable --profile minimal --no-self-update",
                   "info: syncing channel updates for 'stable-x86_64-unknown-linux-gnu'",
                   "  stable-x86_64-unknown-linux-gnu unchanged - rustc 1.78.0 (9b00956e5 2024-04-29)",
                   "##[endgroup]", "[command]rustc --version --verbose", "rustc 1.78.0 (9b00956e5 2024-04-29)")),
                 "rust", ("$ rustc --version", "rustc 1.78.0 (9b00956e5 2024-04-29)", "$ cargo --version",
                          "cargo 1.78.0 (54d8815d0 2024-03-26)")),
    "c": _Env("gcc:13-bookworm", None, "c", ("$ gcc --version", "gcc (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0")),
    "cpp": _Env("gcc:13-bookworm", None, "cpp", ("$ g++ --version", "g++ (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0")),
    "shell": _Env("debian:bookworm-slim", None, "shell", ()),
    "perl": _Env("perl:5.36-bookworm", None, "perl", ("$ perl --version", "",
                                                      "This is perl 5, version 36, subversion 0 (v5.36.0) built for x86_64-linux",
                                                      "$ cpanm --version",
                                                      "cpanm (App::cpanminus) version 1.7047 (/home/travis/perl5/perlbrew/bin/cpanm)")),
}
_DEFAULT_ENV = _Env("debian:bookworm-slim", None, "generic", ())


@dataclass(frozen=True)
class _Job:
    case: Case
    results: Sequence[StepResult]
    platform: str
    rng: random.Random
    start: float
    env: _Env
    repo: str  # "acme/<project>"
    sha: str

    @property
    def failing(self) -> int:
        return len(self.results) - 1

    @property
    def exit_code(self) -> int:
        return self.results[-1].exit_code

    def seconds(self, r: StepResult) -> float:
        """A made-up but stable duration for a step (the measured one varies from build to build)."""
        n = len(_lines(r.output))
        return round(0.4 + 0.004 * n + self.rng.uniform(0.5, 6.0), 3)


def _job(case: Case, results: Sequence[StepResult], platform: str) -> _Job:
    seed = int.from_bytes(_digest("corpus", case.name)[:8], "big")
    start = _EPOCH + (seed % (30 * 86400)) + (seed >> 40) % 1000 / 1000.0
    rng = random.Random(int.from_bytes(_digest(platform, case.name)[:8], "big"))
    return _Job(case, results, platform, rng, start, _ENVS.get(case.ecosystem, _DEFAULT_ENV),
                f"acme/{case.project}", _hex(40, "sha", case.name))


# ------------------------------------------------------------------------------------------ GitHub Actions

_GH_RUNNER = "GitHub Actions 2"
_GH_TIMEOUT_MIN = 5


def _gh_stamp(t: float) -> str:
    s = int(t)
    return dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{int((t - s) * 1e7):07d}Z"


def _github(job: _Job) -> _Log:
    log = _Log(job.start, job.rng)
    ws = f"/home/runner/work/{job.case.project}/{job.case.project}"
    action = job.env.gh_action
    actions = ["actions/checkout@v4"] + ([action[0]] if action else [])
    log.add("Current runner version: '2.316.1'", "##[group]Operating System", "Ubuntu", "22.04.4", "LTS",
            "##[endgroup]", "##[group]Runner Image", "Image: ubuntu-22.04", "Version: 20240422.1.0",
            "Included Software: https://github.com/actions/runner-images/blob/ubuntu22/20240422.1/images/ubuntu/Ubuntu2204-Readme.md",
            "Image Release: https://github.com/actions/runner-images/releases/tag/ubuntu22%2F20240422.1",
            "##[endgroup]", "##[group]Runner Image Provisioner", "2.0.369.1", "##[endgroup]",
            "##[group]GITHUB_TOKEN Permissions", "Contents: read", "Metadata: read", "##[endgroup]",
            "Secret source: Actions", "Prepare workflow directory", "Prepare all required actions",
            "Getting action download info")
    for a in actions:
        log.add(f"Download action repository '{a}' (SHA:{_hex(40, 'action', a)})", gap=0.3)
    log.add("Complete job name: ci")
    tmp = f"/home/runner/work/_temp/{_hex(8, 'tmp', job.case.name)}-{_hex(4, 'tmp2', job.case.name)}-{_hex(4, 'tmp3', job.case.name)}"
    log.add("##[group]Run actions/checkout@v4", "with:", f"  repository: {job.repo}", "  token: ***",
            "  ssh-strict: true", "  ssh-user: git", "  persist-credentials: true", "  clean: true",
            "  sparse-checkout-cone-mode: true", "  fetch-depth: 1", "  fetch-tags: false", "  show-progress: true",
            "  lfs: false", "  submodules: false", "  set-safe-directory: true", "##[endgroup]",
            f"Syncing repository: {job.repo}", "##[group]Getting Git version info",
            f"Working directory is '{ws}'", "[command]/usr/bin/git version", "git version 2.44.0", "##[endgroup]",
            f"Temporarily overriding HOME='{tmp}' before making global git config changes",
            "Adding repository directory to the temporary git global config as a safe directory",
            f"[command]/usr/bin/git config --global --add safe.directory {ws}",
            f"Deleting the contents of '{ws}'", "##[group]Initializing the repository",
            f"[command]/usr/bin/git init {ws}", f"Initialized empty Git repository in {ws}/.git/",
            f"[command]/usr/bin/git remote add origin https://github.com/{job.repo}", "##[endgroup]",
            "##[group]Disabling automatic garbage collection", "[command]/usr/bin/git config --local gc.auto 0",
            "##[endgroup]", "##[group]Fetching the repository",
            "[command]/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --no-recurse-submodules --depth=1 "
            f"origin +{job.sha}:refs/remotes/origin/main", gap=0.8)
    log.add(f" * [new ref]         {job.sha} -> origin/main", "##[endgroup]", "##[group]Determining the checkout info",
            "##[endgroup]", "##[group]Checking out the ref",
            "[command]/usr/bin/git checkout --progress --force -B main refs/remotes/origin/main",
            "Switched to a new branch 'main'", "branch 'main' set up to track 'origin/main'.", "##[endgroup]",
            "[command]/usr/bin/git log -1 --format='%H'", f"'{job.sha}'", gap=1.1)
    if action:
        name, with_, lines = action
        log.add(f"##[group]Run {name}", "with:", *(f"  {k}: {v}" for k, v in with_), "##[endgroup]", gap=0.2)
        log.add(*lines, gap=1.5)
    env_block: list[str] = []
    if job.case.ecosystem == "python":
        env_block = ["  pythonLocation: /opt/hostedtoolcache/Python/3.11.9/x64",
                     "  PKG_CONFIG_PATH: /opt/hostedtoolcache/Python/3.11.9/x64/lib/pkgconfig",
                     "  Python_ROOT_DIR: /opt/hostedtoolcache/Python/3.11.9/x64",
                     "  LD_LIBRARY_PATH: /opt/hostedtoolcache/Python/3.11.9/x64/lib"]
    elif job.case.ecosystem == "java":
        env_block = ["  JAVA_HOME: /opt/hostedtoolcache/Java_Temurin-Hotspot_jdk/17.0.11-9/x64",
                     "  JAVA_HOME_17_X64: /opt/hostedtoolcache/Java_Temurin-Hotspot_jdk/17.0.11-9/x64"]
    for i, r in enumerate(job.results):
        cmd = _cmd_lines(r.step.run)
        env = env_block + [f"  {k}: {v}" for k, v in r.step.env.items()]
        log.add(f"##[group]Run {cmd[0]}", *cmd, "shell: /usr/bin/bash -e {0}", *(["env:", *env] if env else []),
                "##[endgroup]", gap=0.1)
        failing = i == job.failing
        ends = job.case.ends if failing else "exit"
        if ends == "job_timeout":
            log.output(r.output, job.seconds(r), failing=True)
            log.t = max(log.t, job.start + _GH_TIMEOUT_MIN * 60 + job.rng.uniform(0.0, 0.9))
            log.mark_exit()
            log.add(f"##[error]The job running on runner {_GH_RUNNER} has exceeded the maximum execution time of "
                    f"{_GH_TIMEOUT_MIN} minutes.", "##[error]The operation was canceled.")
        elif ends == "runner_lost":
            log.output(r.output, job.seconds(r), failing=True)
            log.mark_exit()
            log.add("##[error]The runner has received a shutdown signal. This can happen when the runner service is "
                    "stopped, or a manually started runner is canceled.", gap=job.rng.uniform(20, 90))
            log.add("##[error]The operation was canceled.", "Cleaning up orphan processes", gap=2.0)
            return log
        else:
            log.output(r.output, job.seconds(r), failing=failing)
            if failing:
                log.mark_exit()
                log.add(f"##[error]Process completed with exit code {r.exit_code}.")
    log.add("Post job cleanup.", "[command]/usr/bin/git version", "git version 2.44.0",
            f"Temporarily overriding HOME='{tmp}' before making global git config changes",
            "Adding repository directory to the temporary git global config as a safe directory",
            f"[command]/usr/bin/git config --global --add safe.directory {ws}",
            "[command]/usr/bin/git config --local --name-only --get-regexp core\\.sshCommand",
            "[command]/usr/bin/git submodule foreach --recursive sh -c \"git config --local --name-only --get-regexp "
            "'core\\.sshCommand' && git config --local --unset-all 'core.sshCommand' || :\"",
            "[command]/usr/bin/git config --local --name-only --get-regexp http\\.https\\:\\/\\/github\\.com\\/\\.extraheader",
            "http.https://github.com/.extraheader",
            "[command]/usr/bin/git config --local --unset-all http.https://github.com/.extraheader",
            "[command]/usr/bin/git submodule foreach --recursive sh -c \"git config --local --name-only --get-regexp "
            "'http\\.https\\:\\/\\/github\\.com\\/\\.extraheader' && git config --local --unset-all "
            "'http.https://github.com/.extraheader' || :\"", gap=0.4)
    log.add("Cleaning up orphan processes", gap=0.3)
    return log


def _github_text(log: _Log) -> list[str]:
    return [f"{_gh_stamp(t)} {ln}" for t, ln in log.items]


# ------------------------------------------------------------------------------------------------ GitLab


_GL_RUNNER = "docker-runner-2"


def _gl_start(log: _Log, name: str, title: str) -> None:
    log.add(f"section_start:{int(log.t)}:{name}\r{ESC}[0K{ESC}[0K{ESC}[36;1m{title}{ESC}[0;m")


def _gl_end(log: _Log, name: str) -> None:
    log.add(f"section_end:{int(log.t)}:{name}\r{ESC}[0K")


def _gitlab(job: _Job) -> _Log:
    log = _Log(job.start, job.rng)
    image = job.env.image
    digest = _hex(64, "image", image)
    token = _hex(8, "runner-token", _GL_RUNNER)
    log.add(f"{ESC}[0KRunning with gitlab-runner 16.11.1 (535ced5f){ESC}[0;m",
            f"{ESC}[0K  on {_GL_RUNNER} {token}, system ID: s_{_hex(12, 'system', _GL_RUNNER)}{ESC}[0;m")
    _gl_start(log, "prepare_executor", 'Preparing the "docker" executor')
    log.add(f"{ESC}[0KUsing Docker executor with image {image} ...{ESC}[0;m",
            f"{ESC}[0KPulling docker image {image} ...{ESC}[0;m")
    log.add(f"{ESC}[0KUsing docker image sha256:{_hex(64, 'local', image)} for {image} with digest "
            f"{image.split(':')[0]}@sha256:{digest} ...{ESC}[0;m", gap=job.rng.uniform(2, 9))
    _gl_end(log, "prepare_executor")
    _gl_start(log, "prepare_script", "Preparing environment")
    log.add(f"Running on runner-{token}-project-4417-concurrent-0 via {_GL_RUNNER}...", gap=0.6)
    _gl_end(log, "prepare_script")
    _gl_start(log, "get_sources", "Getting source from Git repository")
    log.add(f"{ESC}[32;1mFetching changes with git depth set to 20...{ESC}[0;m",
            f"Initialized empty Git repository in /builds/{job.repo}/.git/",
            f"{ESC}[32;1mCreated fresh repository.{ESC}[0;m", gap=0.3)
    log.add(f"{ESC}[32;1mChecking out {job.sha[:8]} as detached HEAD (ref is main)...{ESC}[0;m",
            "", f"{ESC}[32;1mSkipping Git submodules setup{ESC}[0;m", gap=1.2)
    _gl_end(log, "get_sources")
    _gl_start(log, "step_script", 'Executing "step_script" stage of the job script')
    log.add(f"{ESC}[0KUsing docker image sha256:{_hex(64, 'local', image)} for {image} with digest "
            f"{image.split(':')[0]}@sha256:{digest} ...{ESC}[0;m")
    for i, r in enumerate(job.results):
        cmd = _cmd_lines(r.step.run)
        shown = cmd[0] + (" # collapsed multi-line command" if len(cmd) > 1 else "")
        log.add(f"{ESC}[32;1m$ {shown}{ESC}[0;m", gap=0.05)
        failing = i == job.failing
        log.output(r.output, job.seconds(r), failing=failing)
        ends = job.case.ends if failing else "exit"
        if ends == "job_timeout":
            log.t = max(log.t, job.start + 3600 + job.rng.uniform(0.0, 5.0))
            log.mark_exit()
            log.add(f"{ESC}[31;1mERROR: Job failed: execution took longer than 1h0m0s seconds{ESC}[0;m")
            return log
        if ends == "runner_lost":
            log.mark_exit()
            log.add(f"{ESC}[31;1mERROR: Job failed (system failure): Error response from daemon: No such container: "
                    f"{_hex(64, 'container', job.case.name)} (docker.go:626:0s){ESC}[0;m", gap=job.rng.uniform(20, 90))
            return log
    _gl_end(log, "step_script")
    _gl_start(log, "cleanup_file_variables", "Cleaning up project directory and file based variables")
    _gl_end(log, "cleanup_file_variables")
    log.mark_exit()
    # the runner's own quirk: the colour reset comes after the message's newline
    log.add(f"{ESC}[31;1mERROR: Job failed: exit code {job.exit_code}", f"{ESC}[0;m", gap=0.2)
    return log


# ----------------------------------------------------------------------------------------------- Jenkins


_JK_AGENT = "ci-agent-2"


def _jenkins(job: _Job) -> _Log:
    log = _Log(job.start, job.rng)
    ws = f"/home/jenkins/workspace/{job.case.project}_main"
    url = f"https://git.example.com/{job.repo}.git"
    log.add("Started by user ci-bot", f"Obtained Jenkinsfile from git {url}", "[Pipeline] Start of Pipeline",
            "[Pipeline] node", f"Running on {_JK_AGENT} in {ws}", "[Pipeline] {", "[Pipeline] stage",
            "[Pipeline] { (Declarative: Checkout SCM)", "[Pipeline] checkout", "Selected Git installation does not exist. Using Default",
            "The recommended git tool is: NONE", "using credential ci-git", "Cloning the remote Git repository",
            f"Cloning repository {url}", f" > git init {ws} # timeout=10", f"Fetching upstream changes from {url}",
            " > git --version # timeout=10", " > git --version # 'git version 2.39.2'",
            "using GIT_ASKPASS to set credentials ci-git",
            f" > git fetch --tags --force --progress -- {url} +refs/heads/*:refs/remotes/origin/* # timeout=10")
    log.add(f" > git config remote.origin.url {url} # timeout=10",
            " > git config --add remote.origin.fetch +refs/heads/*:refs/remotes/origin/* # timeout=10",
            "Avoid second fetch", " > git rev-parse refs/remotes/origin/main^{commit} # timeout=10",
            f"Checking out Revision {job.sha} (refs/remotes/origin/main)",
            " > git config core.sparsecheckout # timeout=10", f" > git checkout -f {job.sha} # timeout=10",
            'Commit message: "Update tests"', "[Pipeline] }", "[Pipeline] // stage", "[Pipeline] withEnv",
            "[Pipeline] {", "[Pipeline] timeout", "Timeout set to expire in 5 min 0 sec", "[Pipeline] {", gap=1.4)
    closing = ["[Pipeline] }", "[Pipeline] // timeout", "[Pipeline] }", "[Pipeline] // withEnv", "[Pipeline] }",
               "[Pipeline] // node", "[Pipeline] End of Pipeline"]
    for i, r in enumerate(job.results):
        log.add("[Pipeline] stage", f"[Pipeline] {{ ({r.step.name})", "[Pipeline] sh", gap=0.1)
        log.add(*(f"+ {c}" for c in _cmd_lines(r.step.run) if c.strip()), gap=0.3)
        failing = i == job.failing
        log.output(r.output, job.seconds(r), failing=failing)
        ends = job.case.ends if failing else "exit"
        if ends == "job_timeout":
            log.t = max(log.t, job.start + 300 + job.rng.uniform(0.0, 0.9))
            log.mark_exit()
            log.add("Cancelling nested steps due to timeout", "Sending interrupt signal to process")
            log.add("script returned exit code 143", gap=job.rng.uniform(0.2, 2.0))
            log.add("[Pipeline] }", "[Pipeline] // stage", *closing, "Timeout has been exceeded", "Finished: ABORTED")
            return log
        if ends == "runner_lost":
            log.mark_exit()
            log.add(f"Cannot contact {_JK_AGENT}: java.io.IOException: Unexpected termination of the channel",
                    gap=job.rng.uniform(20, 90))
            log.add("[Pipeline] }", "[Pipeline] // stage", *closing, "Agent went offline during the build",
                    "ERROR: Connection was broken: java.io.IOException: Unexpected termination of the channel",
                    "Finished: FAILURE", gap=1.0)
            return log
        log.add("[Pipeline] }", "[Pipeline] // stage")
    log.add(*closing)
    log.mark_exit()
    log.add(f"ERROR: script returned exit code {job.exit_code}", "Finished: FAILURE")
    return log


# ---------------------------------------------------------------------------------------------- CircleCI


def _circleci(job: _Job) -> _Log:
    log = _Log(job.start, job.rng)
    image = "cimg/" + {"python": "python:3.11", "node": "node:20.12", "java": "openjdk:17.0", "go": "go:1.22",
                       "rust": "rust:1.78"}.get(job.case.ecosystem, "base:2024.05")
    log.add("Spin up environment", f"Build-agent version 1.0.229581-{_hex(8, 'agent')} (2024-04-26T14:06:42+0000)",
            "System information:", " Server Version: 24.0.9", " Storage Driver: overlay2", "  Backing Filesystem: xfs",
            " Cgroup Driver: cgroupfs", " Cgroup Version: 1", " Kernel Version: 5.15.0-1057-aws",
            " Operating System: Ubuntu 22.04.4 LTS", " OSType: linux", " Architecture: x86_64", "",
            f"Starting container {image}")
    log.add(f"{image}: using image {image.split(':')[0]}@sha256:{_hex(64, 'image', image)}",
            "Time to create container: 2s", "Running job", gap=job.rng.uniform(2, 8))
    log.add("Preparing environment variables", "Using build environment variables:",
            f"  BASH_ENV=/tmp/.bash_env-{_hex(24, 'bashenv', job.case.name)}-0-build", "  CI=true", "  CIRCLECI=true",
            "  CIRCLE_BRANCH=main", "  CIRCLE_BUILD_NUM=1287", f"  CIRCLE_BUILD_URL=https://circleci.com/gh/{job.repo}/1287",
            "  CIRCLE_JOB=build", "  CIRCLE_NODE_INDEX=0", "  CIRCLE_NODE_TOTAL=1",
            f"  CIRCLE_PROJECT_REPONAME={job.case.project}", "  CIRCLE_PROJECT_USERNAME=acme",
            f"  CIRCLE_REPOSITORY_URL=git@github.com:{job.repo}.git", f"  CIRCLE_SHA1={job.sha}",
            "  CIRCLE_SHELL_ENV=/tmp/.bash_env-0-build", "  CIRCLE_USERNAME=ci-bot",
            "  CIRCLE_WORKFLOW_ID=" + "-".join((_hex(8, "wf", job.case.name), _hex(4, "wf1", job.case.name),
                                                _hex(4, "wf2", job.case.name), _hex(4, "wf3", job.case.name),
                                                _hex(12, "wf4", job.case.name))),
            "  CIRCLE_WORKING_DIRECTORY=~/project", "", "Using environment variables from project settings and/or contexts:",
            "  CIRCLE_JOB=**REDACTED**", "", "The redacted variables listed above will be masked in run step output.")
    log.add("Checkout code", "#!/bin/sh", "set -e", "", "# Workaround old docker images with incorrect $HOME",
            "# check https://github.com/docker/docker/issues/2968 for details",
            'if [ "${HOME}" = "/" ]', "then", "  export HOME=$(getent passwd $(id -un) | cut -d: -f6)", "fi", "",
            "Creating .ssh directory", "Adding the following entries to known_hosts:",
            "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "",
            f'Cloning git repository - git clone --no-checkout "git@github.com:{job.repo}.git" .', gap=0.5)
    log.add("Cloning into '.'...", "", f"Checking out branch - git checkout --force -B main {job.sha}",
            "Switched to a new branch 'main'", gap=1.3)
    for i, r in enumerate(job.results):
        log.add(r.step.name, "#!/bin/bash -eo pipefail", *_cmd_lines(r.step.run), gap=0.2)
        failing = i == job.failing
        log.output(r.output, job.seconds(r), failing=failing)
        if not failing:
            continue
        if job.case.ends == "job_timeout":
            log.t = max(log.t, job.start + 600 + job.rng.uniform(0.0, 30.0))
            log.mark_exit()
            log.add("Too long with no output (exceeded 10m0s): context deadline exceeded")
        elif job.case.ends == "runner_lost":
            log.mark_exit()
            log.add("Lost connection to job executor", gap=300.0)
        else:
            log.add("")
            log.mark_exit()
            log.add(f"Exited with code exit status {r.exit_code}")
    return log


# ------------------------------------------------------------------------------------------------ Travis


_INSTALLISH = ("install", "dependenc", "setup", "bootstrap", "restore", "fetch", "download", "vendor", "prepare")


def _tr_time(log: _Log) -> tuple[str, float]:
    tid = f"{log.rng.getrandbits(32):08x}"
    return tid, log.t


def _tr_end(log: _Log, tid: str, t0: float, event: str) -> str:
    a, b = int(t0 * 1e9), int(log.t * 1e9)
    return f"travis_time:end:{tid}:start={a},finish={b},duration={b - a},event={event}\r{ESC}[0K"


def _travis(job: _Job) -> _Log:
    log = _Log(job.start, job.rng)
    uuid = "-".join((_hex(8, "u0", job.case.name), _hex(4, "u1", job.case.name), _hex(4, "u2", job.case.name),
                     _hex(4, "u3", job.case.name), _hex(12, "u4", job.case.name)))
    log.add(f"travis_fold:start:worker_info\r{ESC}[0K{ESC}[33;1mWorker information{ESC}[0m",
            "hostname: 3c71c1a6-22c4-4c0d-a3e1-7b7f1a4f2a10@1.worker-com-7d9f9c8b6-x2q4l.gce-production-2",
            "version: 7.2.0 https://github.com/travis-ci/worker/tree/5b1b6a3f2c4d4e5f6a7b8c9d0e1f2a3b4c5d6e7f",
            f"instance: travis-job-{uuid} travis-ci-ubuntu-2204-1714377600-5b1b6a3 (via amqp)",
            f"startup: {job.rng.uniform(5, 9):.8f}s", f"travis_fold:end:worker_info\r{ESC}[0K")
    for event in ("no_world_writable_dirs", "agent", "check_unsupported"):
        tid, t0 = _tr_time(log)
        log.wait(job.rng.uniform(0.002, 0.15))
        log.add(f"travis_time:start:{tid}\r{ESC}[0K" + _tr_end(log, tid, t0, event))
    log.add(f"travis_fold:start:system_info\r{ESC}[0K{ESC}[33;1mBuild system information{ESC}[0m",
            f"Build language: {job.env.travis}", "Build dist: jammy", "Build id: 271828182", "Job id: 628318530",
            "Runtime kernel version: 5.15.0-1057-gcp", "travis-build version: 2a1b3c4d",
            "Build image provisioning date and time", "Mon Apr 29 08:00:00 UTC 2024",
            "Operating System Details", "Distributor ID:\tUbuntu", "Description:\tUbuntu 22.04.4 LTS",
            "Release:\t22.04", "Codename:\tjammy", f"travis_fold:end:system_info\r{ESC}[0K", "")
    tid, t0 = _tr_time(log)
    log.add(f"travis_fold:start:git.checkout\r{ESC}[0Ktravis_time:start:{tid}\r{ESC}[0K"
            f"$ git clone --depth=50 --branch=main https://github.com/{job.repo}.git {job.repo}", gap=0.3)
    log.add(f"Cloning into '{job.repo}'...", gap=0.9)
    log.add(_tr_end(log, tid, t0, "checkout"), f"$ cd {job.repo}", f"$ git checkout -qf {job.sha}",
            f"travis_fold:end:git.checkout\r{ESC}[0K", "")
    log.add(*job.env.travis_setup, gap=0.4)
    n_before = len(job.results) - 1
    phases = ["install" if any(w in r.step.name.lower() for w in _INSTALLISH) else "before_script"
              for r in job.results[:-1]]
    last = job.results[-1]
    phases.append("install" if any(w in last.step.name.lower() for w in _INSTALLISH) and
                  all(p == "install" for p in phases[:-1]) else "script")
    count = {p: phases.count(p) for p in set(phases)}
    seen: dict[str, int] = {}
    for i, (r, phase) in enumerate(zip(job.results, phases)):
        seen[phase] = seen.get(phase, 0) + 1
        fold = phase if count[phase] == 1 else f"{phase}.{seen[phase]}"
        folded = phase != "script" and i < n_before
        tid, t0 = _tr_time(log)
        start = f"travis_fold:start:{fold}\r{ESC}[0K" if folded else ""
        cmd = r.step.run.strip("\n")
        log.add(*f"{start}travis_time:start:{tid}\r{ESC}[0K$ {cmd}".split("\n"), gap=0.1)
        failing = i == job.failing
        log.output(r.output, job.seconds(r), failing=failing)
        ends = job.case.ends if failing else "exit"
        if ends == "job_timeout":
            log.wait(600.0)
            log.add("", "")
            log.mark_exit()
            log.add("No output has been received in the last 10m0s, this potentially indicates a stalled build "
                    "or something wrong with the build itself.",
                    "Check the details on how to adjust your build configuration on: "
                    "https://docs.travis-ci.com/user/common-build-problems/#build-times-out-because-no-output-was-received",
                    "", "The build has been terminated", "")
            return log
        if ends == "runner_lost":
            log.mark_exit()  # Travis requeues the job and prints nothing: the log stops here
            return log
        end = _tr_end(log, tid, t0, phase)
        if not failing:
            log.add(end)
            if folded:
                log.add(f"travis_fold:end:{fold}\r{ESC}[0K")
            log.add("")
            continue
        log.mark_exit()
        if phase == "script":
            log.add(*f'{end}{ESC}[31;1mThe command "{cmd}" exited with {r.exit_code}.{ESC}[0m'.split("\n"))
            log.add("", "", "Done. Your build exited with 1.", gap=1.0)
        else:
            log.add(*f'{end}{ESC}[31;1mThe command "{cmd}" failed and exited with {r.exit_code} during .{ESC}[0m'
                    .split("\n"))
            log.add("", "Your build has been stopped.")
    return log


# ------------------------------------------------------------------------------------------------ render


_RENDERERS: dict[str, Callable[[_Job], _Log]] = {
    "github": _github, "gitlab": _gitlab, "jenkins": _jenkins, "circleci": _circleci, "travis": _travis,
}


def render(platform: str, case: Case, results: Sequence[StepResult]) -> Rendered:
    """The log of ``case``'s job as ``platform`` shows it, and where the failing step's output is in it."""
    if platform not in _RENDERERS:
        raise ValueError(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}")
    if not results:
        raise ValueError(f"{case.name}: no step results to render")
    job = _job(case, results, platform)
    log = _RENDERERS[platform](job)
    lines = _github_text(log) if platform == "github" else [ln for _, ln in log.items]
    first, last = log.chunk()
    return Rendered("\n".join(lines) + "\n", first, last)
