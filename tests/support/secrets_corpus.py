"""A corpus of realistic FAKE secrets in CI-log context, shared by the unit and integration tests.

Every value is generated from a fixed seed, so it is distinctive (no other text in a test contains it)
and the same in every run. None of these is a real credential: the shapes (prefixes, lengths,
alphabets) match what the providers issue, the contents are random.

* :data:`CASES`: one log line (or a few lines, for PEM blocks) and the secret values that must not
  survive :func:`~healing_guard.patterns.tokenize.redact`.
* :data:`NEGATIVES`: ordinary CI output that must come through unchanged.
* :func:`all_secrets`, :func:`log_lines`: everything at once, for the end-to-end tests.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

__all__ = ["CASES", "NEGATIVES", "Case", "all_secrets", "log_lines", "pem_blocks"]

_rng = random.Random(20261126)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64URL = ALNUM + "-_"


def _s(n: int, alphabet: str = ALNUM) -> str:
    # at least one upper, one lower and one digit, so a value is unmistakable when searched for
    while True:
        v = "".join(_rng.choice(alphabet) for _ in range(n))
        if alphabet != ALNUM or (any(c.isupper() for c in v) and any(c.islower() for c in v)
                                 and any(c.isdigit() for c in v)):
            return v


def _pw(tag: str) -> str:
    """A password-like value: unique, with punctuation that shells and URLs tolerate."""
    return f"{tag}{_s(6)}!{_s(5)}"


def _jwt() -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT","kid":"' + _s(8).encode() + b'"}')
    body = base64.urlsafe_b64encode(b'{"sub":"' + _s(12).encode() + b'","iss":"https://token.actions.'
                                    b'githubusercontent.com","exp":1767225600}')
    sig = base64.urlsafe_b64encode(_rng.randbytes(64))
    return ".".join(p.decode().rstrip("=") for p in (head, body, sig))


def _pem(kind: str, width: int, n_bytes: int) -> tuple[list[str], list[str]]:
    """A private key block: the BEGIN line, base64 body lines of the format's width, the END line.
    Returns (lines, secret values): every body line is secret, including the short last one."""
    body = base64.b64encode(_rng.randbytes(n_bytes)).decode()
    rows = [body[i:i + width] for i in range(0, len(body), width)]
    return [f"-----BEGIN {kind}-----", *rows, f"-----END {kind}-----"], rows


@dataclass(frozen=True)
class Case:
    name: str
    lines: tuple[str, ...]
    secrets: tuple[str, ...]


def _case(name: str, line: str | list[str], *secrets: str) -> Case:
    lines = (line,) if isinstance(line, str) else tuple(line)
    return Case(name, lines, tuple(secrets))


GHP = [f"ghp_{_s(36)}" for _ in range(4)]
GHS, GHO, GHU, GHR = (f"{p}_{_s(36)}" for p in ("ghs", "gho", "ghu", "ghr"))
GH_PAT = f"github_pat_11{_s(20, UPPER_DIGITS)}_{_s(59)}"
GLPAT = [f"glpat-{_s(20, B64URL)}" for _ in range(3)]
AKIA = [f"AKIA{_s(16, UPPER_DIGITS)}" for _ in range(4)]
ASIA = f"ASIA{_s(16, UPPER_DIGITS)}"
AWS_SECRET = [f"{_s(30)}/{_s(4)}+{_s(5)}" for _ in range(3)]  # 40 chars of base64, like wJalrXUtnFEMI/K7MDENG/…
AWS_SESSION = f"IQoJb3JpZ2luX2Vj{_s(120, ALNUM + '/+')}=="
SLACK = [f"xoxb-{_rng.randrange(10**11, 10**12)}-{_rng.randrange(10**12, 10**13)}-{_s(24)}",
         f"xoxp-{_rng.randrange(10**11, 10**12)}-{_rng.randrange(10**11, 10**12)}-"
         f"{_rng.randrange(10**12, 10**13)}-{_s(32, 'abcdef0123456789')}",
         f"xoxa-2-{_rng.randrange(10**11, 10**12)}-{_s(30)}",
         f"xapp-1-A{_s(10, UPPER_DIGITS)}-{_rng.randrange(10**12, 10**13)}-{_s(64, 'abcdef0123456789')}"]
SLACK_HOOK = f"T{_s(8, UPPER_DIGITS)}/B{_s(10, UPPER_DIGITS)}/{_s(24)}"
JWT = [_jwt() for _ in range(3)]
NPM = f"npm_{_s(36)}"
PYPI = f"pypi-AgEIcHlwaS5vcmc{_s(60, B64URL)}"
GOOGLE = f"AIza{_s(35, B64URL)}"
STRIPE = f"sk_live_{_s(24)}"
PW = [_pw(t) for t in ("Hunt", "Db", "My", "Dk", "Js", "Yml", "Pg", "Cli", "Xml", "Url", "Env", "Ssh", "Curl",
                       "Smtp", "Redis", "Kc", "Esc")]
BEARER = _s(40, ALNUM + "._-")
BASIC = base64.b64encode(f"deploy:{_s(16)}".encode()).decode()
GENERIC = [_s(32) for _ in range(8)]

RSA_LINES, RSA_BODY = _pem("RSA PRIVATE KEY", 64, 1190)
SSH_LINES, SSH_BODY = _pem("OPENSSH PRIVATE KEY", 70, 380)
EC_LINES, EC_BODY = _pem("EC PRIVATE KEY", 64, 121)
PK8_LINES, PK8_BODY = _pem("PRIVATE KEY", 64, 1217)
ENC_LINES, ENC_BODY = _pem("ENCRYPTED PRIVATE KEY", 64, 400)
PGP_LINES, PGP_BODY = _pem("PGP PRIVATE KEY BLOCK", 64, 300)

AZURE_KEY = base64.b64encode(_rng.randbytes(64)).decode()
SAS_SIG = base64.b64encode(_rng.randbytes(32)).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
DOCKER_AUTH = base64.b64encode(f"deploy:{_s(24)}".encode()).decode()
OPENSSL_PW = _s(18)
SENDGRID = f"SG.{_s(22, B64URL)}.{_s(43, B64URL)}"
HF = f"hf_{_s(34)}"
HF2 = f"hf_{_s(34)}"
AMP_PW = (_s(10), _s(12))
VAULT_TOKEN = f"hvs.{_s(24)}"
ENTROPY = _s(40)

CASES: tuple[Case, ...] = (
    # --- GitHub ------------------------------------------------------------------------------------
    _case("ghp export", f"+ export GITHUB_TOKEN={GHP[0]}", GHP[0]),
    _case("ghp in clone url", f"git remote set-url origin https://x-access-token:{GHP[1]}@github.com/acme/web.git",
          GHP[1]),
    _case("ghp bare", f"Using personal access token {GHP[2]} for the release upload", GHP[2]),
    _case("ghp as url user", f"fatal: could not read from https://{GHP[3]}@github.com/acme/api.git", GHP[3]),
    _case("ghs", f"##[debug]GITHUB_TOKEN={GHS}", GHS),
    _case("gho", f"gh auth status: Logged in to github.com as ci-bot (oauth_token: {GHO})", GHO),
    _case("ghu", f"token = {GHU}", GHU),
    _case("ghr", f"refresh with {GHR}", GHR),
    _case("github_pat", f"echo {GH_PAT} | gh auth login --with-token", GH_PAT),
    # --- GitLab ------------------------------------------------------------------------------------
    _case("glpat header", f"curl --header \"PRIVATE-TOKEN: {GLPAT[0]}\" https://gitlab.com/api/v4/projects", GLPAT[0]),
    _case("glpat oauth2 url", f"Cloning into 'vendor/proto' from https://oauth2:{GLPAT[1]}@gitlab.example.com/g/p.git",
          GLPAT[1]),
    _case("glpat bare", f"$ ./release.sh {GLPAT[2]}", GLPAT[2]),
    # --- AWS ---------------------------------------------------------------------------------------
    _case("akia env", f"AWS_ACCESS_KEY_ID={AKIA[0]}", AKIA[0]),
    _case("akia credentials file", f"aws_access_key_id = {AKIA[1]}", AKIA[1]),
    _case("akia in error", f"An error occurred (InvalidClientTokenId) for key {AKIA[2]} when calling GetCallerIdentity",
          AKIA[2]),
    _case("asia", f"assumed role with {ASIA}", ASIA),
    _case("aws secret credentials file", f"aws_secret_access_key = {AWS_SECRET[0]}", AWS_SECRET[0]),
    _case("aws secret env", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET[1]}", AWS_SECRET[1]),
    _case("aws secret json", f'{{"AccessKeyId": "{AKIA[3]}", "SecretAccessKey": "{AWS_SECRET[2]}"}}',
          AKIA[3], AWS_SECRET[2]),
    _case("aws session token", f"export AWS_SESSION_TOKEN={AWS_SESSION}", AWS_SESSION),
    # --- Slack -------------------------------------------------------------------------------------
    _case("xoxb", f"SLACK_BOT_TOKEN={SLACK[0]}", SLACK[0]),
    _case("xoxp", f"posting with {SLACK[1]} to #ci", SLACK[1]),
    _case("xoxa", f"slack: invalid_auth for {SLACK[2]}", SLACK[2]),
    _case("xapp", f"socket mode app token {SLACK[3]}", SLACK[3]),
    _case("slack webhook", f"SLACK_WEBHOOK=https://hooks.slack.com/services/{SLACK_HOOK}", SLACK_HOOK),
    # --- JWT ---------------------------------------------------------------------------------------
    _case("jwt bearer", f"Authorization: Bearer {JWT[0]}", JWT[0]),
    _case("jwt oidc", f"::debug::id_token={JWT[1]}", JWT[1]),
    _case("jwt bare", f"decoded {JWT[2]} -> expired", JWT[2]),
    # --- private keys (multi-line blocks) ----------------------------------------------------------
    _case("pem rsa", RSA_LINES, *RSA_BODY),
    _case("pem openssh", SSH_LINES, *SSH_BODY),
    _case("pem ec", EC_LINES, *EC_BODY),
    _case("pem pkcs8", PK8_LINES, *PK8_BODY),
    _case("pem encrypted", ENC_LINES, *ENC_BODY),
    _case("pgp private key block", PGP_LINES, *PGP_BODY),
    # --- passwords ---------------------------------------------------------------------------------
    _case("password=", f"Connecting with password={PW[0]} --verbose", PW[0]),
    _case("PASSWORD:", f"DB_PASSWORD: {PW[1]}", PW[1]),
    _case("--password space", f"+ psql --host db --password {PW[2]} -c 'select 1'", PW[2]),
    _case("--password=", f"+ mvn deploy -Drepo.user=ci --password={PW[3]}", PW[3]),
    _case("mysql -p quoted", f"+ mysql -u root -p'{PW[4]}' -h 127.0.0.1 app < schema.sql", PW[4]),
    _case("mysql -p joined", f"+ mysqldump -uroot -p{PW[5]} app > dump.sql", PW[5]),
    _case("url user:pass", f"DATABASE_URL=postgres://app:{PW[6]}@db.internal:5432/app", PW[6]),
    _case("docker login -p", f"+ docker login -u ci-bot -p {PW[7]} registry.example.com", PW[7]),
    _case("docker login --password", f"+ docker login --username ci --password \"{PW[8]}\" ghcr.io", PW[8]),
    _case("json password", f'request body: {{"username": "ci", "password": "{PW[9]}"}}', PW[9]),
    _case("yaml password quoted", f"  password: '{PW[10]}'", PW[10]),
    _case("pgpassword env", f"PGPASSWORD={PW[11]}", PW[11]),
    _case("xml password", f"<server><id>nexus</id><password>{PW[12]}</password></server>", PW[12]),
    _case("url in amqp", f"Connecting to amqp://guest:{PW[13]}@rabbit:5672//", PW[13]),
    _case("sshpass", f"+ sshpass -p '{PW[14]}' scp build.tar deploy@host:/srv", PW[14]),
    _case("curl -u", f"+ curl -fsS -u deploy:{PW[15]} https://artifacts.example.com/api/ping", PW[15]),
    _case("smtp pass env", f"SMTP_PASS={PW[16]}", PW[16]),
    # --- HTTP headers ------------------------------------------------------------------------------
    _case("bearer header", f"> Authorization: Bearer {BEARER}", BEARER),
    _case("basic header", f"curl -H 'Authorization: Basic {BASIC}' https://nexus/", BASIC),
    _case("x-api-key", f"-H \"X-API-Key: {GENERIC[0]}\"", GENERIC[0]),
    # --- package registries ------------------------------------------------------------------------
    _case("npm _authToken", f"//registry.npmjs.org/:_authToken={NPM}", NPM),
    _case("npmrc env", f"npm config set //npm.pkg.github.com/:_authToken {GENERIC[1]}", GENERIC[1]),
    _case("pypi token", f"twine upload -u __token__ -p {PYPI} dist/*", PYPI),
    _case("pypi index url", f"pip install --index-url https://__token__:{GENERIC[2]}@pypi.example.com/simple app",
          GENERIC[2]),
    # --- env dumps ---------------------------------------------------------------------------------
    _case("env GITHUB_TOKEN", f"GITHUB_TOKEN={GENERIC[3]}", GENERIC[3]),
    _case("env CI_JOB_TOKEN", f"CI_JOB_TOKEN={GENERIC[4]}", GENERIC[4]),
    _case("env NODE_AUTH_TOKEN", f"  NODE_AUTH_TOKEN: {GENERIC[5]}", GENERIC[5]),
    _case("env SECRET_KEY_BASE", f"SECRET_KEY_BASE={GENERIC[6]}", GENERIC[6]),
    _case("env CLIENT_SECRET", f"AZURE_CLIENT_SECRET={GENERIC[7]}", GENERIC[7]),
    _case("google api key", f"maps: using key {GOOGLE}", GOOGLE),
    _case("stripe", f"Stripe::AuthenticationError: Invalid API Key provided: {STRIPE}", STRIPE),
    # --- shapes an operator found stored on 2026-12 (issue 16) --------------------------------------
    _case("azure AccountKey", "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey="
          f"{AZURE_KEY};EndpointSuffix=core.windows.net", AZURE_KEY),
    _case("azure SAS sig", f"az storage blob upload --sas-token 'sv=2022-11-02&ss=b&sp=rw&se=2026-12-31&sig={SAS_SIG}'",
          SAS_SIG),
    _case("docker config auth", f'{{"auths":{{"registry.example.com":{{"auth":"{DOCKER_AUTH}"}}}}}}', DOCKER_AUTH),
    _case("openssl passin", f"openssl pkcs12 -export -in cert.pem -out cert.p12 -passin pass:{OPENSSL_PW}",
          OPENSSL_PW),
    _case("sendgrid", f"mail: using {SENDGRID} for the release notes", SENDGRID),
    _case("huggingface", f"huggingface-cli login --token {HF} && echo ok", HF),
    _case("hf bare", f"downloading with {HF2}", HF2),
    _case("value after &", f"DB_PASSWORD={AMP_PW[0]}&{AMP_PW[1]}", AMP_PW[0], AMP_PW[1]),
    _case("echo to vault login", f"echo {VAULT_TOKEN} | vault login -", VAULT_TOKEN),
    _case("high entropy value", f"RELEASE_SIGNING_MATERIAL={ENTROPY}", ENTROPY),
)

#: Ordinary CI output that must not be touched.
NEGATIVES: tuple[str, ...] = (
    "===== 3 passed, 1 failed, 2 skipped in 4.21s =====",
    "tests/test_auth.py::test_password_reset PASSED                       [ 12%]",
    "tests/test_api.py::TestToken::test_refresh FAILED",
    "token count: 512 (max 4096)",
    "Tokens processed: 12",
    "KeyboardInterrupt",
    "keyboard layout: us",
    "commit 3f9c2a1b4d5e6f708192a3b4c5d6e7f809112233",
    "HEAD is now at 9fceb02d0ae598e95dc970b74767f19372d61af8 Merge pull request #42",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  dist/app.tar.gz",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "Digest: sha256:9a5e0d4d8b2c1f3e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
    "Secret source: Actions",
    "Prepare workflow directory",
    "KeyError: 'token'",
    "PWD=/home/runner/work/app/app",
    "Run actions/cache@v4 with key: node-cache-Linux-x64-npm-5f4dcc3b5aa765d61d8327deb882cf99",
    "echo \"$CR_PAT\" | docker login ghcr.io -u ci --password-stdin",
    "Login Succeeded",
    "see https://github.com/acme/web/actions/runs/123456789",
    "Author: Jane Doe <jane@example.com>",
    "primary key violation on table users",
    "private_key_path: /home/runner/.ssh/id_ed25519",
    "src/main/java/com/acme/auth/TokenService.java:[42,17] cannot find symbol",
    "AssertionError: assert 'expired' == 'valid'",
    "npm WARN deprecated request@2.88.2: request has been deprecated",
    "+ mkdir -p build/reports",
    "Downloading https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0-py3-none-any.whl (62 kB)",
    "-----BEGIN CERTIFICATE-----",
    "go: downloading golang.org/x/oauth2 v0.15.0",
    "if token == expected_token:",
    "max_tokens=512",
)


def pem_blocks() -> list[Case]:
    return [c for c in CASES if len(c.lines) > 1]


def all_secrets() -> list[str]:
    return [s for c in CASES for s in c.secrets]


def leaks(blob: str | bytes) -> list[str]:
    """The corpus secrets found in ``blob``."""
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    return [s for s in _SECRETS if s in text]


def failing_lines() -> list[str]:
    """One matched failure line per single-line case, with the case's secret in it: every secret is
    then on an evidence line (what findings, commands and facts carry)."""
    return [f"write /tmp/cache: No space left on device while running: {c.lines[0]}"
            for c in CASES if len(c.lines) == 1]


def log_lines() -> list[str]:
    """Every case's lines in a row, as one log."""
    return [ln for c in CASES for ln in c.lines]


_SECRETS = all_secrets()
