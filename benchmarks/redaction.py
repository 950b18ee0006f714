"""Secret redaction: how many FAKE secrets in realistic CI log lines ``redact`` removes (recall), and how
many ordinary lines that only look similar it alters anyway (false-positive rate).

    /work/main/.venv/bin/python benchmarks/redaction.py [--json] [--seed N]

The corpus is generated at run time from a seeded ``random.Random``: every value is random, only its
shape (prefix, length, alphabet) follows what the provider or tool issues, so nothing here is a real
credential and the same seed always yields the same corpus. Two parts:

* :func:`corpus`: ``PER_SHAPE`` cases for each of 60+ shapes (GitHub/GitLab/Slack/Stripe/... tokens,
  cloud keys, credentials in URLs and on command lines, config files, PEM blocks, and high-entropy
  values in neutral positions that only a shape-agnostic rule can catch). Each :class:`Case` is one log
  line (several, joined with ``\\n``, for PEM blocks) and the exact secret in it. Single lines go
  through :func:`~healing_guard.patterns.tokenize.redact`, multi-line cases through
  :func:`~healing_guard.patterns.tokenize.redact_lines`. The lines are *raw*, not ``clean``-ed: a
  GitHub timestamp or a logger prefix is sometimes still in front, as in a dead letter's payload.
* :func:`negatives`: 300+ lines with no secret that must come through unchanged: commit SHAs, digests,
  UUIDs, integrity hashes, ``${{ secrets.X }}`` and ``$VAR`` references, already-masked values
  (``***``, ``[MASKED]``), test ids and compiler errors that mention tokens and keys, and so on.

Scores (:func:`score`):

* ``recall``: share of cases where no part of the secret survives: neither the whole secret nor any
  ``PIECE``-character piece of it that was not already elsewhere in the line. Stricter than
  ``recall_exact`` (the whole secret is gone), which a redactor that stops at ``&`` or ``%2B`` would
  pass while half the value leaks (``DB_PASSWORD=[REDACTED]&second-half``).
* per-shape recall, the shapes below 100 % and the first misses with their redacted output;
* ``fp_rate``: share of negatives ``redact`` changed at all, with the first ones it changed.

Prints a table; ``--json`` prints one JSON line instead. Exit code 0 whatever the scores: the
thresholds live in the tests.
"""

from __future__ import annotations


import argparse
import base64
import json
import random
import string
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PER_SHAPE", "PIECE", "Case", "corpus", "leaked", "main", "negatives", "redact_case", "score", "shapes"]

PER_SHAPE = 8  #: cases per shape, each with other random values and (mostly) another line template
PIECE = 8  #: a surviving run of this many characters of a secret counts as a leak
N_NEGATIVE_PER_TEMPLATE = 9

ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"


@dataclass(frozen=True)
class Case:
    """One log line (lines joined with ``\\n`` for multi-line shapes) and the secret that must not survive."""

    shape: str
    line: str
    secret: str


# --------------------------------------------------------------------------------------------------
# random values
# --------------------------------------------------------------------------------------------------

_WORDS = ("maple", "orbit", "tundra", "copper", "violet", "harbor", "glacier", "lantern", "meadow", "quartz",
          "saffron", "timber", "ember", "falcon", "juniper", "nimbus", "pepper", "raven", "summit", "walnut")
_USERS = ("ci", "deploy", "app", "runner", "svc-build", "admin", "release-bot", "jenkins", "backup", "gitlab-ci")
_APPS = ("billing-api", "web", "checkout", "auth-service", "search", "ingest-worker", "payments", "reports")
_ORGS = ("acme", "example-org", "platform-team", "contoso", "initech", "globex")
_PKGS = ("requests", "urllib3", "lodash", "react-dom", "pydantic", "typescript", "jest", "boto3", "express")
_DBS = ("app", "orders", "test", "analytics", "inventory", "ci_test")


class _Gen:
    """Random values of the shapes secrets and their surroundings come in, all from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def s(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def mixed(self, n: int, alphabet: str = ALNUM) -> str:
        """``n`` characters with at least one upper-case letter, one lower-case letter and one digit."""
        if not (any(c.isupper() for c in alphabet) and any(c.islower() for c in alphabet)
                and any(c.isdigit() for c in alphabet)):
            raise ValueError(f"alphabet {alphabet!r} lacks a character class")
        while True:
            v = self.s(n, alphabet)
            if any(c.isupper() for c in v) and any(c.islower() for c in v) and any(c.isdigit() for c in v):
                return v

    def hex(self, n: int) -> str:
        while True:  # at least one letter and one digit: unmistakable when searched for
            v = self.s(n, HEX)
            if any(c.isdigit() for c in v) and any(c.isalpha() for c in v):
                return v

    def b64(self, nbytes: int) -> str:
        return base64.b64encode(self.r.randbytes(nbytes)).decode()

    def b64url(self, nbytes: int) -> str:
        return base64.urlsafe_b64encode(self.r.randbytes(nbytes)).decode().rstrip("=")

    def pick(self, xs: Sequence[str]) -> str:
        return self.r.choice(xs)

    def num(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def password(self) -> str:
        """A password a person or a generator would choose: random with symbols, or a passphrase."""
        if self.r.random() < 0.3:
            words = self.r.sample(_WORDS, 3)
            return "-".join(words) + "-" + str(self.num(1000, 9999))
        while True:
            v = self.mixed(self.num(14, 24), ALNUM + "!#%*+-._~^")
            if not v[0].isalnum():
                continue
            return v

    def url_password(self) -> str:
        """A password as it can appear in a URL (unreserved characters, sometimes percent-escaped)."""
        v = self.mixed(self.num(14, 26), ALNUM + "-._~")
        if self.r.random() < 0.3:
            i = self.num(3, len(v) - 3)
            v = v[:i] + self.pick(("%40", "%2F", "%3A", "%23")) + v[i:]
        return v

    def user(self) -> str:
        return self.pick(_USERS)

    def app(self) -> str:
        return self.pick(_APPS)

    def repo(self) -> str:
        return f"{self.pick(_ORGS)}/{self.app()}"

    def host(self) -> str:
        return self.pick((f"{self.app()}.internal", f"db-{self.num(1, 9)}.ci.svc.cluster.local",
                          f"10.{self.num(0, 255)}.{self.num(0, 255)}.{self.num(2, 254)}",
                          f"{self.app()}.example.net", "localhost", "127.0.0.1"))

    def registry(self) -> str:
        return self.pick(("registry.example.com", "ghcr.io", "quay.io", f"{self.num(100000000000, 999999999999)}"
                          ".dkr.ecr.us-east-1.amazonaws.com", "registry.gitlab.com", "docker.io"))

    def semver(self) -> str:
        return f"{self.num(0, 12)}.{self.num(0, 40)}.{self.num(0, 30)}"

    def uuid(self) -> str:
        h = self.s(32, HEX)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.pick('89ab')}{h[17:20]}-{h[20:]}"

    def prefix(self) -> str:
        """What may precede a line in a raw log: nothing, a GitHub timestamp, a clock, a logger prefix."""
        x = self.r.random()
        if x < 0.4:
            return ""
        if x < 0.75:
            return self.gh_ts()
        if x < 0.88:
            return f"[{self.num(0, 23):02d}:{self.num(0, 59):02d}:{self.num(0, 59):02d}] "
        return (f"2024-05-{self.num(1, 28):02d} {self.num(0, 23):02d}:{self.num(0, 59):02d}:{self.num(0, 59):02d},"
                f"{self.num(0, 999):03d} {self.pick(('INFO', 'DEBUG', 'WARNING'))} ")

    def gh_ts(self) -> str:
        return (f"2024-05-{self.num(1, 28):02d}T{self.num(0, 23):02d}:{self.num(0, 59):02d}:{self.num(0, 59):02d}."
                f"{self.num(0, 9999999):07d}Z ")


# --------------------------------------------------------------------------------------------------
# shapes: each returns (line, secret) for template number i
# --------------------------------------------------------------------------------------------------

_Shape = Callable[[_Gen, int], tuple[str, str]]
_SHAPES: dict[str, _Shape] = {}


def _shape(name: str) -> Callable[[_Shape], _Shape]:
    def deco(fn: _Shape) -> _Shape:
        if name in _SHAPES:
            raise ValueError(f"duplicate shape {name}")
        _SHAPES[name] = fn
        return fn
    return deco


def _nth(i: int, templates: Sequence[str]) -> str:
    return templates[i % len(templates)]


@_shape("github_ghp")
def _ghp(g: _Gen, i: int) -> tuple[str, str]:
    s = "ghp_" + g.mixed(36)
    return _nth(i, [
        f"+ echo {s} | gh auth login --with-token",
        f"GH_TOKEN={s} gh release create v{g.semver()} dist/*",
        f"git remote set-url origin https://{s}@github.com/{g.repo()}.git",
        f"> Authorization: token {s}",
        f"gh: using token {s} for api.github.com",
        f"env: GH_ENTERPRISE_TOKEN={s}",
        f"npm config set //npm.pkg.github.com/:_authToken {s}",
        f"Cloning with credentials {s} into '{g.app()}'",
    ]), s


@_shape("github_gho")
def _gho(g: _Gen, i: int) -> tuple[str, str]:
    s = "gho_" + g.mixed(36)
    return _nth(i, [
        f"oauth_token: {s}",
        f"gh auth status: Logged in to github.com account {g.user()} (keyring) token {s}",
        f"  - Token: {s}",
        f"curl -s -H 'Authorization: token {s}' https://api.github.com/user",
        f"Saved credentials {s} to /home/runner/.config/gh/hosts.yml",
        f"git credential approve <<< 'protocol=https host=github.com username=x password={s}'",
        f"DEBUG github.client: request with {s} took {g.num(40, 900)}ms",
        f"{s}",
    ]), s


@_shape("github_ghs")
def _ghs(g: _Gen, i: int) -> tuple[str, str]:
    s = "ghs_" + g.mixed(36)
    return _nth(i, [
        f"git clone https://x-access-token:{s}@github.com/{g.repo()}.git",
        f"Installation token {s} expires at 2024-05-{g.num(1, 28):02d}T{g.num(10, 23)}:00:00Z",
        f"GITHUB_TOKEN={s}",
        f"::add-mask::{s}",
        f"INFO app-auth: minted {s} for installation {g.num(1000000, 99999999)}",
        f"git -c http.extraheader='AUTHORIZATION: basic {s}' fetch origin",
        f"{{\"token\":\"{s}\",\"expires_at\":\"2024-05-01T11:00:00Z\"}}",
        f"[command]/usr/bin/git push https://{s}@github.com/{g.repo()} HEAD:main",
    ]), s


@_shape("github_pat_fine_grained")
def _gh_pat(g: _Gen, i: int) -> tuple[str, str]:
    s = "github_pat_" + g.mixed(22) + "_" + g.mixed(59)
    return _nth(i, [
        f"export GH_PAT={s}",
        f"gh auth login --with-token <<< {s}",
        f"Using personal access token {s}",
        f"RENOVATE_TOKEN={s} npx renovate",
        f"git clone https://{g.user()}:{s}@github.com/{g.repo()}",
        f"  token: '{s}'",
        f"curl -H \"Authorization: Bearer {s}\" https://api.github.com/repos/{g.repo()}",
        f"credentials: {s}",
    ]), s


@_shape("gitlab_glpat")
def _glpat(g: _Gen, i: int) -> tuple[str, str]:
    s = "glpat-" + g.mixed(20, ALNUM + "_-")
    return _nth(i, [
        f"git clone https://oauth2:{s}@gitlab.com/{g.repo()}.git",
        f"curl --header \"PRIVATE-TOKEN: {s}\" https://gitlab.example.com/api/v4/projects",
        f"GITLAB_TOKEN={s}",
        f"$ glab auth login --token {s}",
        f"Using GitLab access {s} for release-cli",
        f"gitlab-runner register --url https://gitlab.com --registration-token {s}",
        f"  private_token = {s}",
        f"danger: GITLAB_API_TOKEN {s}",
    ]), s


@_shape("aws_access_key_id")
def _akia(g: _Gen, i: int) -> tuple[str, str]:
    s = "AKIA" + g.s(16, string.ascii_uppercase + "234567")
    return _nth(i, [
        f"aws_access_key_id = {s}",
        f"AWS_ACCESS_KEY_ID={s}",
        f"Found credentials in environment variables: {s}",
        f"An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: key {s} is invalid",
        f"export AWS_ACCESS_KEY_ID=\"{s}\"",
        f"  AccessKeyId: {s}",
        f"{{\"AccessKey\": {{\"UserName\": \"{g.user()}\", \"AccessKeyId\": \"{s}\", \"Status\": \"Active\"}}}}",
        f"botocore.credentials: using {s}",
    ]), s


def _aws_secret(g: _Gen) -> str:
    return g.mixed(40, ALNUM + "+/")


@_shape("aws_secret_key_ini")
def _aws_ini(g: _Gen, i: int) -> tuple[str, str]:
    s = _aws_secret(g)
    return _nth(i, [
        f"aws_secret_access_key = {s}",
        f"aws_secret_access_key={s}",
        f"  aws_secret_access_key = {s}",
        f"+ cat ~/.aws/credentials: aws_secret_access_key = {s}",
        f"aws_secret_access_key   = {s}",
        f"[default] aws_secret_access_key = {s}",
        f"aws_secret_access_key = {s}",
        f"    aws_secret_access_key= {s}",
    ]), s


@_shape("aws_secret_key_env")
def _aws_env(g: _Gen, i: int) -> tuple[str, str]:
    s = _aws_secret(g)
    return _nth(i, [
        f"AWS_SECRET_ACCESS_KEY={s}",
        f"export AWS_SECRET_ACCESS_KEY=\"{s}\"",
        f"docker run -e AWS_SECRET_ACCESS_KEY={s} -e AWS_REGION=us-east-1 amazon/aws-cli s3 ls",
        f"AWS_ACCESS_KEY_ID=AKIA{g.s(16, UPPER_ALNUM)} AWS_SECRET_ACCESS_KEY={s} aws s3 sync dist s3://{g.app()}",
        f"  AWS_SECRET_ACCESS_KEY: {s}",
        f"declare -x AWS_SECRET_ACCESS_KEY=\"{s}\"",
        f"AWS_SECRET_ACCESS_KEY='{s}'",
        f"env AWS_SECRET_ACCESS_KEY={s} terraform plan",
    ]), s


@_shape("aws_configure_set")
def _aws_configure(g: _Gen, i: int) -> tuple[str, str]:
    s = _aws_secret(g)
    return _nth(i, [
        f"+ aws configure set aws_secret_access_key {s}",
        f"aws configure set aws_secret_access_key {s} --profile {g.app()}",
        f"$ aws configure set default.aws_secret_access_key {s}",
        f"aws configure set aws_secret_access_key \"{s}\"",
    ]), s


@_shape("slack_xoxb")
def _xoxb(g: _Gen, i: int) -> tuple[str, str]:
    s = f"xoxb-{g.s(11, string.digits)}-{g.s(13, string.digits)}-{g.mixed(24)}"
    return _nth(i, [
        f"SLACK_BOT_TOKEN={s}",
        f"curl -X POST -H 'Authorization: Bearer {s}' https://slack.com/api/chat.postMessage",
        f"Posting to #{g.app()} with {s}",
        f"slack-notify: token={s} channel=C{g.s(10, UPPER_ALNUM)}",
        f"export SLACK_TOKEN={s}",
        f"[slack] {s} -> ok",
        f"  bot_token: \"{s}\"",
        f"WARN slack_sdk: rate limited for {s}, retrying in 30s",
    ]), s


@_shape("slack_xoxp")
def _xoxp(g: _Gen, i: int) -> tuple[str, str]:
    s = f"xoxp-{g.s(11, string.digits)}-{g.s(11, string.digits)}-{g.s(13, string.digits)}-{g.hex(32)}"
    return _nth(i, [
        f"SLACK_USER_TOKEN={s}",
        f"slack api auth.test token={s}",
        f"Using user token {s}",
        f"curl -d token={s} -d channel=#{g.app()} https://slack.com/api/chat.postMessage",
        f"  user_token: {s}",
        f"slackcat --token {s} --channel builds build.log",
        f"{s}",
        f"DEBUG slack: {s} scopes=chat:write,files:write",
    ]), s


@_shape("slack_webhook_url")
def _slack_hook(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(24)
    url = f"https://hooks.slack.com/services/T{g.s(8, UPPER_ALNUM)}/B{g.s(10, UPPER_ALNUM)}/{s}"
    return _nth(i, [
        f"curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"build failed\"}}' {url}",
        f"SLACK_WEBHOOK_URL={url}",
        f"Notifying {url}",
        f"  webhook: {url}",
        f"POST {url} -> 200 ok",
        f"requests.exceptions.HTTPError: 404 Client Error: Not Found for url: {url}",
        f"export SLACK_WEBHOOK={url}",
        f"slack-notifier: sending to \"{url}\"",
    ]), s


@_shape("stripe_sk_live")
def _sk_live(g: _Gen, i: int) -> tuple[str, str]:
    s = "sk_live_" + g.mixed(g.r.choice((24, 99)))
    return _stripe(g, i, s)


def _stripe(g: _Gen, i: int, s: str) -> tuple[str, str]:
    return _nth(i, [
        f"STRIPE_SECRET_KEY={s}",
        f"stripe listen --api-key {s} --forward-to localhost:4242/webhook",
        f"curl https://api.stripe.com/v1/charges -u {s}:",
        f"Stripe client configured with {s}",
        f"  stripe_key: {s}",
        f"export STRIPE_API_KEY='{s}'",
        f"stripe.error.AuthenticationError: Invalid API Key provided: {s}",
        f"{{\"stripe\": {{\"key\": \"{s}\"}}}}",
    ]), s


@_shape("stripe_rk_live")
def _rk_live(g: _Gen, i: int) -> tuple[str, str]:
    return _stripe(g, i + 3, "rk_live_" + g.mixed(g.r.choice((24, 99))))


@_shape("google_api_key")
def _aiza(g: _Gen, i: int) -> tuple[str, str]:
    s = "AIza" + g.mixed(35, B64URL)
    return _nth(i, [
        f"GOOGLE_API_KEY={s}",
        f"GET https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key={s} 200",
        f"Firebase config: apiKey={s}",
        f"  \"apiKey\": \"{s}\",",
        f"gcloud: using {s}",
        f"FIREBASE_WEB_API_KEY: {s}",
        f"Requesting https://www.googleapis.com/youtube/v3/videos?part=id&key={s}",
        f"[firebase] initializeApp({{ apiKey: '{s}' }})",
    ]), s


@_shape("npm_token")
def _npm(g: _Gen, i: int) -> tuple[str, str]:
    s = "npm_" + g.mixed(36)
    return _nth(i, [
        f"NPM_TOKEN={s}",
        f"npm whoami --registry https://registry.npmjs.org --token {s}",
        f"export NODE_AUTH_TOKEN={s}",
        f"Publishing with {s}",
        f"  npm-token: {s}",
        f"echo {s} > .npm-token",
        f"npm ERR! 401 Unauthorized - token {s} is expired or revoked",
        f"yarn config set npmAuthToken {s}",
    ]), s


@_shape("npmrc_auth_token")
def _npmrc(g: _Gen, i: int) -> tuple[str, str]:
    s = "npm_" + g.mixed(36) if g.r.random() < 0.5 else g.uuid()
    return _nth(i, [
        f"//registry.npmjs.org/:_authToken={s}",
        f"echo \"//registry.npmjs.org/:_authToken={s}\" > ~/.npmrc",
        f"npm config set //registry.npmjs.org/:_authToken={s}",
        f"+ printf '//registry.npmjs.org/:_authToken=%s\\n' {s} >> .npmrc",
        f"//registry.npmjs.org/:_authToken=\"{s}\"",
        f"cat .npmrc: //registry.npmjs.org/:_authToken={s}",
        f"  //registry.npmjs.org/:_authToken={s}",
        f"//registry.npmjs.org/:_authToken = {s}",
    ]), s


@_shape("pypi_token")
def _pypi(g: _Gen, i: int) -> tuple[str, str]:
    s = "pypi-AgEIcHlwaS5vcmc" + g.mixed(g.num(60, 160), B64URL)
    return _nth(i, [
        f"twine upload -u __token__ -p {s} dist/*",
        f"TWINE_PASSWORD={s}",
        f"password = {s}",
        f"uv publish --token {s}",
        f"poetry config pypi-token.pypi {s}",
        f"export UV_PUBLISH_TOKEN=\"{s}\"",
        f"Uploading with API token {s}",
        f"  pypi_password: {s}",
    ]), s


def _jwt(g: _Gen) -> str:
    header = g.pick(('{"alg":"HS256","typ":"JWT"}', '{"alg":"RS256","typ":"JWT","kid":"%s"}' % g.hex(16),
                     '{"typ":"JWT","alg":"ES256"}', '{"alg":"RS256","kid":"%s","x5t":"%s"}' % (g.hex(40), g.b64url(20))))
    t = g.num(1714000000, 1716000000)
    payload = json.dumps({"sub": g.pick(("repo:%s:ref:refs/heads/main" % g.repo(), g.uuid(), g.user())),
                          "iat": t, "exp": t + 3600, "iss": g.pick(("https://token.actions.githubusercontent.com",
                                                                     "https://auth.example.com", "gitlab.com")),
                          "jti": g.uuid()}, separators=(",", ":"))
    enc = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    sig = g.b64url(g.r.choice((32, 64, 256)))  # HS256, HS512, RS256
    return f"{enc(header.encode())}.{enc(payload.encode())}.{sig}"


@_shape("jwt")
def _jwt_shape(g: _Gen, i: int) -> tuple[str, str]:
    s = _jwt(g)
    return _nth(i, [
        f"ACTIONS_ID_TOKEN={s}",
        f"Received OIDC token {s}",
        f"{{\"access_token\":\"{s}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}",
        f"id_token: {s}",
        f"GET https://{g.host()}/callback?jwt={s} 302",
        f"jwt decode {s}",
        f"  CI_JOB_JWT_V2={s}",
        f"Set-Cookie: session={s}; Path=/; HttpOnly",
    ]), s


@_shape("bearer_header")
def _bearer(g: _Gen, i: int) -> tuple[str, str]:
    s = g.pick(("ya29.a0" + g.mixed(g.num(100, 160), B64URL), g.mixed(g.num(32, 64), B64URL), g.mixed(40)))
    return _nth(i, [
        f"curl -sS -H \"Authorization: Bearer {s}\" https://{g.host()}/api/v1/deploy",
        f"> Authorization: Bearer {s}",
        f"authorization: bearer {s}",
        f"-H 'Authorization: Bearer {s}'",
        f"headers = {{\"Authorization\": \"Bearer {s}\"}}",
        f"DEBUG urllib3: Authorization: Bearer {s}",
        f"http --auth-type=bearer --auth {s} GET https://{g.host()}/status",
        f"Bearer {s}",
    ]), s


@_shape("basic_auth_header")
def _basic(g: _Gen, i: int) -> tuple[str, str]:
    s = base64.b64encode(f"{g.user()}:{g.password()}".encode()).decode()
    return _nth(i, [
        f"Authorization: Basic {s}",
        f"curl -H \"Authorization: Basic {s}\" https://{g.host()}/artifactory/api/npm/",
        f"> authorization: Basic {s}",
        f"-H 'Authorization: Basic {s}'",
        f"DEBUG http.client: header: Authorization: Basic {s}",
        f"  Authorization: \"Basic {s}\"",
        f"Proxy-Authorization: Basic {s}",
        f"{{\"headers\": {{\"Authorization\": \"Basic {s}\"}}}}",
    ]), s


@_shape("x_api_key_header")
def _x_api_key(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(32, 40))
    return _nth(i, [
        f"X-API-Key: {s}",
        f"curl -H \"x-api-key: {s}\" https://{g.host()}/v2/upload",
        f"> X-Api-Key: {s}",
        f"-H 'X-API-KEY: {s}'",
        f"request headers: {{'X-API-Key': '{s}', 'Accept': 'application/json'}}",
        f"  x-api-key: \"{s}\"",
        f"DEBUG http: X-API-Key: {s}",
        f"wget --header='X-API-Key: {s}' https://{g.host()}/dist.tar.gz",
    ]), s


@_shape("url_https_credentials")
def _url_https(g: _Gen, i: int) -> tuple[str, str]:
    s = g.url_password()
    u = g.user()
    return _nth(i, [
        f"git clone https://{u}:{s}@git.example.com/{g.repo()}.git",
        f"pip install --extra-index-url https://__token__:{s}@pkgs.example.com/simple/ {g.pick(_PKGS)}",
        f"Fetching https://{u}:{s}@artifacts.example.com/releases/{g.app()}-{g.semver()}.tar.gz",
        f"remote: https://{u}:{s}@{g.host()}/{g.repo()}",
        f"PIP_INDEX_URL=https://{u}:{s}@nexus.example.com/repository/pypi/simple",
        f"fatal: unable to access 'https://{u}:{s}@github.com/{g.repo()}.git/': The requested URL returned error: 403",
        f"helm repo add charts https://{u}:{s}@charts.example.com",
        f"Downloading http://{u}:{s}@{g.host()}:8081/repository/raw/tool.zip",
    ]), s


@_shape("url_db_credentials")
def _url_db(g: _Gen, i: int) -> tuple[str, str]:
    s = g.url_password()
    u = g.user()
    return _nth(i, [
        f"postgres://{u}:{s}@{g.host()}:5432/{g.pick(_DBS)}",
        f"DATABASE_URL=postgresql://{u}:{s}@{g.host()}/{g.pick(_DBS)}?sslmode=require",
        f"Connecting to mysql://root:{s}@127.0.0.1:3306/{g.pick(_DBS)}",
        f"MONGO_URI=mongodb+srv://{u}:{s}@cluster0.{g.s(5, LOWER_ALNUM)}.mongodb.net/test?retryWrites=true",
        f"amqp://{u}:{s}@rabbitmq:5672/",
        f"sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not connect: postgresql+psycopg2://{u}:{s}@{g.host()}/{g.pick(_DBS)}",
        f"  url: jdbc:postgresql://{u}:{s}@{g.host()}:5432/{g.pick(_DBS)}",
        f"flyway -url=postgres://{u}:{s}@{g.host()}/{g.pick(_DBS)} migrate",
    ]), s


@_shape("url_redis_credentials")
def _url_redis(g: _Gen, i: int) -> tuple[str, str]:
    s = g.url_password()
    return _nth(i, [
        f"redis://:{s}@{g.host()}:6379/0",
        f"REDIS_URL=redis://:{s}@localhost:6379",
        f"Connecting to rediss://default:{s}@cache.example.com:6380/1",
        f"celery worker --broker=redis://:{s}@redis:6379/0",
        f"  redis_url: \"redis://:{s}@{g.host()}:6379\"",
        f"redis.exceptions.ConnectionError: Error connecting to redis://:{s}@{g.host()}:6379/0",
        f"CACHE_URL=rediss://:{s}@{g.host()}:6380",
        f"export REDIS_URL='redis://:{s}@redis-master:6379/2'",
    ]), s


@_shape("azure_storage_connection_string")
def _azure_conn(g: _Gen, i: int) -> tuple[str, str]:
    s = g.b64(64)  # 88 characters, "==" at the end
    acct = g.app().replace("-", "") + str(g.num(1, 99))
    conn = f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={s};EndpointSuffix=core.windows.net"
    return _nth(i, [
        conn,
        f"AZURE_STORAGE_CONNECTION_STRING=\"{conn}\"",
        f"az storage blob upload-batch -d $web -s dist --connection-string \"{conn}\"",
        f"  \"AzureWebJobsStorage\": \"{conn}\",",
        f"export AZURE_STORAGE_CONNECTION_STRING='{conn}'",
        f"Using storage {conn}",
        f"ConnectionStrings__Blob={conn}",
        f"azcopy: connection {conn}",
    ]), s


@_shape("azure_sas_url")
def _azure_sas(g: _Gen, i: int) -> tuple[str, str]:
    while True:
        raw = g.b64(32)
        if "+" in raw or "/" in raw:  # an escape inside the value, not only the trailing %3D
            break
    s = urllib.parse.quote(raw, safe="")
    acct = g.app().replace("-", "") + str(g.num(1, 99))
    url = (f"https://{acct}.blob.core.windows.net/{g.pick(('artifacts', 'releases', 'logs'))}/{g.app()}.zip"
           f"?sv=2022-11-02&ss=b&srt=co&sp={g.pick(('r', 'rw', 'racwdl'))}&se=2024-06-{g.num(1, 28):02d}T00:00:00Z"
           f"&st=2024-05-01T00:00:00Z&spr=https&sig={s}")
    return _nth(i, [
        f"azcopy copy ./dist \"{url}\" --recursive",
        f"Uploading to {url}",
        f"INFO: Scanning... {url}",
        f"curl -T build.zip \"{url}\"",
        f"SAS_URL={url}",
        f"Downloaded {url} in 1.2s",
        f"  blob_url: '{url}'",
        f"failed to PUT {url}: 403 AuthenticationFailed",
    ]), s


@_shape("docker_config_auth")
def _docker_cfg(g: _Gen, i: int) -> tuple[str, str]:
    s = base64.b64encode(f"{g.user()}:{g.password()}".encode()).decode()
    reg = g.registry()
    return _nth(i, [
        f"{{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\"}}}}}}",
        f"echo '{{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\"}}}}}}' > ~/.docker/config.json",
        f"DOCKER_AUTH_CONFIG={{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\"}}}}}}",
        f"{{\"auths\": {{\"{reg}\": {{\"auth\": \"{s}\"}}}}}}",
        f"            \"auth\": \"{s}\"",
        f"cat ~/.docker/config.json: {{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\",\"email\":\"ci@example.com\"}}}}}}",
        f"kubectl create secret docker-registry regcred --from-literal=.dockerconfigjson='{{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\"}}}}}}'",
        f"  .dockerconfigjson: {{\"auths\":{{\"{reg}\":{{\"auth\":\"{s}\"}}}}}}",
    ]), s


@_shape("openssl_passin")
def _passin(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"openssl enc -d -aes-256-cbc -pbkdf2 -in secrets.tar.enc -out secrets.tar -passin pass:{s}",
        f"+ openssl pkcs12 -in cert.p12 -nokeys -out cert.pem -passin pass:{s}",
        f"openssl rsa -in signing.key -passin pass:{s} -out signing.dec.key",
        f"openssl enc -aes-256-cbc -d -a -in .env.enc -out .env -passin 'pass:{s}'",
        f"$ openssl smime -decrypt -in msg.p7m -inkey key.pem -passin pass:{s}",
        f"openssl pkcs8 -topk8 -in key.pem -passin pass:{s} -nocrypt",
        f"openssl enc -d -aes256 -md sha256 -in id_rsa.enc -out id_rsa -passin pass:{s}",
        f"openssl x509 -in cert.pem -passin \"pass:{s}\" -noout -subject",
    ]), s


@_shape("openssl_passout")
def _passout(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"openssl genrsa -aes256 -passout pass:{s} -out server.key 4096",
        f"+ openssl pkcs12 -export -in cert.pem -inkey key.pem -out bundle.p12 -passout pass:{s}",
        f"openssl req -new -newkey rsa:2048 -keyout key.pem -passout pass:{s} -subj /CN={g.app()}",
        f"openssl rsa -aes256 -in key.pem -out key.enc.pem -passout 'pass:{s}'",
        f"$ openssl genpkey -algorithm ed25519 -aes-128-cbc -passout pass:{s} -out ed.key",
        f"openssl pkcs12 -export -passout pass:{s} -in tls.crt -inkey tls.key -out tls.pfx",
        f"openssl enc -aes-256-cbc -pbkdf2 -in dump.sql -out dump.sql.enc -pass pass:{s}",
        f"openssl req -x509 -passout \"pass:{s}\" -keyout ca.key -out ca.crt -days 365",
    ]), s


@_shape("sendgrid_api_key")
def _sendgrid(g: _Gen, i: int) -> tuple[str, str]:
    s = f"SG.{g.mixed(22, B64URL)}.{g.mixed(43, B64URL)}"
    return _nth(i, [
        f"SENDGRID_API_KEY={s}",
        f"Using SendGrid key {s}",
        f"  \"apiKey\": \"{s}\"",
        f"curl --request POST --url https://api.sendgrid.com/v3/mail/send --header 'Authorization: Bearer {s}'",
        f"export SENDGRID_API_KEY='{s}'",
        f"mailer: {s}",
        f"sendgrid.exceptions: 401 for {s}",
        f"smtp auth apikey {s}",
    ]), s


@_shape("huggingface_token")
def _hf(g: _Gen, i: int) -> tuple[str, str]:
    s = "hf_" + g.mixed(34)
    return _nth(i, [
        f"HF_TOKEN={s}",
        f"huggingface-cli login --token {s}",
        f"git clone https://{g.user()}:{s}@huggingface.co/{g.repo()}",
        f"Token: {s}",
        f"export HUGGING_FACE_HUB_TOKEN={s}",
        f"huggingface_hub: using {s} from the environment",
        f"  hf_token: {s}",
        f"python train.py --push-to-hub --hub-token {s}",
    ]), s


@_shape("env_password_with_ampersand")
def _db_pw_amp(g: _Gen, i: int) -> tuple[str, str]:
    s = f"{g.mixed(g.num(8, 14))}&{g.mixed(g.num(8, 14))}"
    return _nth(i, [
        f"DB_PASSWORD={s}",
        f"export DB_PASSWORD='{s}'",
        f"POSTGRES_PASSWORD={s}",
        f"MYSQL_ROOT_PASSWORD=\"{s}\"",
        f"  DB_PASSWORD={s}",
        f"declare -x DB_PASSWORD=\"{s}\"",
        f"APP_DB_PASSWORD={s}",
        f"env: DB_PASSWORD={s}",
    ]), s


def _vault_token(g: _Gen) -> str:
    return g.pick(("hvs." + g.mixed(g.num(90, 100), B64URL), "s." + g.mixed(24), "hvb." + g.mixed(g.num(120, 140), B64URL)))


@_shape("vault_login_stdin")
def _vault(g: _Gen, i: int) -> tuple[str, str]:
    s = _vault_token(g)
    return _nth(i, [
        f"echo {s} | vault login -",
        f"+ echo \"{s}\" | vault login -no-print -",
        f"echo {s} | vault login -method=token -",
        f"$ echo '{s}' | vault login -",
        f"printf %s {s} | vault login -",
        f"echo -n {s} | vault login -no-print -",
        f"echo {s} | vault login -address=https://vault.example.com -",
        f"echo {s} | bao login -",
    ]), s


@_shape("docker_login_password_stdin")
def _docker_stdin(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    u = g.user()
    return _nth(i, [
        f"echo {s} | docker login --username {u} --password-stdin",
        f"+ echo \"{s}\" | docker login {g.registry()} -u {u} --password-stdin",
        f"printf %s {s} | podman login quay.io --username {u} --password-stdin",
        f"echo {s} | helm registry login {g.registry()} --username {u} --password-stdin",
        f"$ echo '{s}' | docker login -u {u} --password-stdin {g.registry()}",
        f"echo -n {s} | buildah login --username {u} --password-stdin {g.registry()}",
        f"echo {s} | oras login {g.registry()} -u {u} --password-stdin",
        f"echo {s} | skopeo login --username {u} --password-stdin {g.registry()}",
    ]), s


@_shape("docker_login_p")
def _docker_p(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    u = g.user()
    return _nth(i, [
        f"docker login -u {u} -p {s} {g.registry()}",
        f"+ docker login --username={u} -p {s}",
        f"podman login -u {u} -p {s} quay.io",
        f"$ docker login -u {u} -p '{s}' {g.registry()}",
        f"docker login {g.registry()} -u {u} -p {s}",
        f"helm registry login {g.registry()} -u {u} -p {s}",
        f"docker login -p={s} -u {u}",
        f"sudo docker login -u {u} -p \"{s}\" {g.registry()}",
    ]), s


@_shape("mysql_p")
def _mysql(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(12, 20), ALNUM + "_.%+")
    return _nth(i, [
        f"mysql -h 127.0.0.1 -u root -p{s} -e \"SHOW DATABASES\"",
        f"mysqldump -u {g.user()} -p{s} {g.pick(_DBS)} > dump.sql",
        f"mysqladmin -uroot -p{s} ping",
        f"mysql -u root -p'{s}' {g.pick(_DBS)} < schema.sql",
        f"+ mysql --host=db -uroot -p{s} --execute='select 1'",
        f"$ mysqlsh --uri root@localhost -p{s}",
        f"mysql -u{g.user()} -p\"{s}\" -h {g.host()} {g.pick(_DBS)}",
        f"mysqlimport -u {g.user()} -p{s} --local {g.pick(_DBS)} data.csv",
    ]), s


@_shape("sshpass_p")
def _sshpass(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"sshpass -p {s} ssh -o StrictHostKeyChecking=no {g.user()}@{g.host()}",
        f"+ sshpass -p '{s}' scp dist.tar.gz {g.user()}@{g.host()}:/srv/",
        f"sshpass -p{s} rsync -az build/ {g.user()}@{g.host()}:/var/www/",
        f"$ sshpass -p \"{s}\" ssh {g.user()}@{g.host()} 'systemctl restart {g.app()}'",
        f"sshpass -p {s} sftp -oBatchMode=no {g.user()}@{g.host()}",
        f"timeout 60 sshpass -p {s} ssh-copy-id {g.user()}@{g.host()}",
        f"sshpass -v -p {s} ssh {g.user()}@{g.host()} uptime",
        f"sudo sshpass -p {s} ssh root@{g.host()}",
    ]), s


@_shape("curl_u")
def _curl_u(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    u = g.user()
    return _nth(i, [
        f"curl -u {u}:{s} https://{g.host()}/api/upload -T dist.zip",
        f"+ curl -fsSL --user {u}:{s} -X POST https://jenkins.example.com/job/{g.app()}/build",
        f"curl -s -u \"{u}:{s}\" https://nexus.example.com/service/rest/v1/components",
        f"$ curl -u '{u}:{s}' -F file=@report.xml https://{g.host()}/import",
        f"curl --user={u}:{s} https://{g.host()}/health",
        f"curl -v -u {u}:{s} https://artifactory.example.com/artifactory/api/system/ping",
        f"curl -k -u {u}:{s} -o out.json https://{g.host()}/export",
        f"curl --fail -u {u}:{s} https://{g.host()}/deploy?ref=main",
    ]), s


@_shape("cli_password_option")
def _cli_pw(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"helm repo add charts https://charts.example.com --username {g.user()} --password {s}",
        f"az login --service-principal -u {g.uuid()} --password {s} --tenant {g.uuid()}",
        f"+ ./gradlew publish --password={s}",
        f"liquibase update --username={g.user()} --password={s} --url=jdbc:postgresql://db/app",
        f"argocd login argocd.example.com --username admin --password '{s}'",
        f"sqlcmd -S db -U sa --password {s} -Q 'SELECT 1'",
        f"keytool -importkeystore -srckeystore in.p12 --store-password {s}",
        f"./deploy.sh --db-password {s} --env staging",
    ]), s


@_shape("cli_client_secret_option")
def _cli_cs(g: _Gen, i: int) -> tuple[str, str]:
    s = g.pick((g.mixed(3) + "8Q~" + g.mixed(34, ALNUM + "_.~-"), "GOCSPX-" + g.mixed(28, B64URL), g.mixed(40)))
    return _nth(i, [
        f"./deploy.sh --client-id {g.uuid()} --client-secret={s}",
        f"oauth2-proxy --provider=github --client-secret={s} --cookie-secure",
        f"+ argocd-image-updater --client-secret {s}",
        f"az ad sp credential reset --client-secret={s}",
        f"terraform-provider-azurerm: --client-secret={s}",
        f"gcloud auth oauth --client-secret \"{s}\"",
        f"keycloak-config-cli --client-secret={s} --realm ci",
        f"python sync.py --client-secret={s} --dry-run",
    ]), s


@_shape("maven_settings_password")
def _maven(g: _Gen, i: int) -> tuple[str, str]:
    s = g.pick((g.password(), "{" + g.b64(32) + "}"))
    return _nth(i, [
        f"<password>{s}</password>",
        f"      <password>{s}</password>",
        f"<server><id>nexus</id><username>{g.user()}</username><password>{s}</password></server>",
        f"[DEBUG] settings.xml: <password>{s}</password>",
        f"    <password>{s}</password>",
        f"echo '<settings><servers><server><id>central</id><password>{s}</password></server></servers></settings>' > ~/.m2/settings.xml",
        f"  <server><password>{s}</password></server>",
        f"<password>{s}</password> <!-- deploy -->",
    ]), s


@_shape("export_github_token")
def _export_gh(g: _Gen, i: int) -> tuple[str, str]:
    s = g.pick((g.hex(40), "ghs_" + g.mixed(36), g.hex(40)))  # classic tokens were 40 hex characters
    return _nth(i, [
        f"export GITHUB_TOKEN={s}",
        f"+ export GITHUB_TOKEN=\"{s}\"",
        f"export GH_TOKEN='{s}'",
        f"$ export GITHUB_TOKEN={s}",
        f"export GITHUB_API_TOKEN={s}",
        f"export HOMEBREW_GITHUB_API_TOKEN={s}",
        f"export GITHUB_TOKEN={s} && gh pr list",
        f"export DANGER_GITHUB_API_TOKEN={s}",
    ]), s


@_shape("yaml_password")
def _yaml_pw(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"password: {s}",
        f"  password: \"{s}\"",
        f"    db_password: {s}",
        f"      PASSWORD: '{s}'",
        f"  admin_password: {s}",
        f"spring.datasource.password: {s}",
        f"- password: {s}",
        f"  rabbitmq_password: \"{s}\"",
    ]), s


@_shape("json_client_secret")
def _json_cs(g: _Gen, i: int) -> tuple[str, str]:
    s = g.pick((g.mixed(3) + "8Q~" + g.mixed(34, ALNUM + "_.~-"), "GOCSPX-" + g.mixed(28, B64URL), g.mixed(32)))
    return _nth(i, [
        f"\"client_secret\": \"{s}\"",
        f"{{\"client_id\": \"{g.uuid()}\", \"client_secret\": \"{s}\"}}",
        f"  \"clientSecret\": \"{s}\",",
        f"{{\"installed\":{{\"client_id\":\"{g.num(10**11, 10**12)}.apps.googleusercontent.com\",\"client_secret\":\"{s}\"}}}}",
        f"    \"client_secret\":\"{s}\",",
        f"DEBUG token request body: {{\"grant_type\":\"client_credentials\",\"client_secret\":\"{s}\"}}",
        f"  \"AZURE_CLIENT_SECRET\": \"{s}\"",
        f"credentials.json: {{\"client_secret\": \"{s}\", \"redirect_uris\": [\"http://localhost\"]}}",
    ]), s


_PEM_KINDS = ("RSA", "OPENSSH", "EC", "", "ENCRYPTED", "DSA")
_PEM_DER = {"RSA": b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00", "OPENSSH": b"openssh-key-v1\x00",
            "EC": b"\x30\x77\x02\x01\x01\x04\x20", "": b"\x30\x82\x04\xbe\x02\x01\x00\x30\x0d\x06\x09",
            "ENCRYPTED": b"\x30\x82\x05\x2c\x30\x56\x06\x09", "DSA": b"\x30\x82\x01\xbb\x02\x01\x00\x02\x81\x81"}


def _pem_body(g: _Gen, kind: str, n_full: int) -> list[str]:
    """``n_full`` full base64 lines and a shorter last one (16..width-4 characters)."""
    width = 70 if kind == "OPENSSH" else 64
    last = g.num(4, (width - 4) // 4) * 4
    total = n_full * width + last
    text = base64.b64encode(_PEM_DER[kind] + g.r.randbytes(total)).decode()[:total]
    return [text[k:k + width] for k in range(0, total, width)]


def _pem_marker(kind: str, what: str) -> str:
    return f"-----{what} {kind + ' ' if kind else ''}PRIVATE KEY-----"


@_shape("pem_private_key")
def _pem(g: _Gen, i: int) -> tuple[str, str]:
    kind = _PEM_KINDS[i % len(_PEM_KINDS)]
    v = i % 4
    body = _pem_body(g, kind, g.num(1, 4))
    if v == 1:  # a truncated block: BEGIN and one body line
        body = body[:1]
    lines = [_pem_marker(kind, "BEGIN")]
    if v == 3:  # an encrypted PKCS#1 block carries headers
        lines += ["Proc-Type: 4,ENCRYPTED", f"DEK-Info: AES-128-CBC,{g.hex(32).upper()}", ""]
    lines += body
    if v != 1:
        lines.append(_pem_marker(kind, "END"))
    secret = body[0] if v in (0, 1) else body[-1] if v == 2 else g.pick(body)
    if v == 2 or g.r.random() < 0.3:  # every line with the same GitHub timestamp prefix
        lines = [g.gh_ts() + x for x in lines]
    return "\n".join(lines), secret


@_shape("pem_tail_without_begin")
def _pem_tail(g: _Gen, i: int) -> tuple[str, str]:
    kind = _PEM_KINDS[i % len(_PEM_KINDS)]
    body = _pem_body(g, kind, g.num(1, 3))
    lines = body + [_pem_marker(kind, "END")]
    if i % 3 == 2:
        lines = [g.gh_ts() + x for x in lines]
    return "\n".join(lines), body[-1] if i % 2 else body[0]


@_shape("gcp_private_key_in_json")
def _gcp_pk_json(g: _Gen, i: int) -> tuple[str, str]:
    body = _pem_body(g, "", 3)
    pem = "\\n".join([_pem_marker("", "BEGIN"), *body, _pem_marker("", "END")]) + "\\n"
    s = body[1]
    return _nth(i, [
        f"  \"private_key\": \"{pem}\",",
        f"{{\"type\": \"service_account\", \"project_id\": \"{g.app()}\", \"private_key\": \"{pem}\"}}",
        f"GOOGLE_CREDENTIALS={{\"type\":\"service_account\",\"private_key\":\"{pem}\",\"client_email\":\"ci@{g.app()}.iam.gserviceaccount.com\"}}",
        f"\"private_key\":\"{pem}\"",
    ]), s


@_shape("twilio_api_key_sid")
def _twilio_sk(g: _Gen, i: int) -> tuple[str, str]:
    s = "SK" + g.hex(32)
    return _nth(i, [
        f"TWILIO_API_KEY={s}",
        f"Using Twilio API key {s} for account AC{g.hex(32)}",
        f"twilio profiles:add ci --api-key {s}",
        f"  twilio_api_key: {s}",
        f"export TWILIO_API_KEY_SID={s}",
        f"twilio: {s} authenticated",
        f"{{\"sid\": \"{s}\", \"friendly_name\": \"ci\"}}",
        f"TWILIO_KEY={s}",
    ]), s


@_shape("twilio_auth_token")
def _twilio_auth(g: _Gen, i: int) -> tuple[str, str]:
    s = g.hex(32)
    return _nth(i, [
        f"TWILIO_AUTH_TOKEN={s}",
        f"export TWILIO_AUTH_TOKEN={s}",
        f"docker run -e TWILIO_ACCOUNT_SID=AC{g.hex(32)} -e TWILIO_AUTH_TOKEN={s} {g.app()}:latest",
        f"  TWILIO_AUTH_TOKEN: \"{s}\"",
        f"TWILIO_AUTH_TOKEN='{s}' npm test",
        f"env: TWILIO_AUTH_TOKEN={s}",
        f"declare -x TWILIO_AUTH_TOKEN=\"{s}\"",
        f"TWILIO_AUTH_TOKEN={s} python notify.py",
    ]), s


@_shape("datadog_api_key")
def _dd(g: _Gen, i: int) -> tuple[str, str]:
    s = g.hex(32)
    return _nth(i, [
        f"DD_API_KEY={s}",
        f"export DD_API_KEY={s}",
        f"docker run -d -e DD_API_KEY={s} -e DD_SITE=datadoghq.eu gcr.io/datadoghq/agent:7",
        f"DATADOG_API_KEY={s} datadog-ci junit upload --service {g.app()} reports/",
        f"  DD_API_KEY: \"{s}\"",
        f"DD_API_KEY='{s}' DD_ENV=ci pytest",
        f"helm upgrade datadog datadog/datadog --set datadog.apiKey={s}",
        f"env: DD_API_KEY={s}",
    ]), s


@_shape("gcp_private_key_id")
def _gcp_pkid(g: _Gen, i: int) -> tuple[str, str]:
    s = g.hex(40)
    return _nth(i, [
        f"\"private_key_id\": \"{s}\",",
        f"  \"private_key_id\": \"{s}\",",
        f"{{\"type\": \"service_account\", \"project_id\": \"{g.app()}\", \"private_key_id\": \"{s}\"}}",
        f"\"private_key_id\":\"{s}\"",
        f"GOOGLE_CREDENTIALS={{\"type\":\"service_account\",\"private_key_id\":\"{s}\",\"client_id\":\"{g.num(10**20, 10**21)}\"}}",
        f"    \"private_key_id\": \"{s}\",",
        f"cat key.json: {{\"private_key_id\": \"{s}\", \"client_email\": \"ci@{g.app()}.iam.gserviceaccount.com\"}}",
        f"\"private_key_id\" : \"{s}\"",
    ]), s


@_shape("entropy_env_credential")
def _ent_env(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(40)
    name = _nth(i, ["MY_SERVICE_CREDENTIAL", "BUILD_CREDENTIAL", "DEPLOY_CREDENTIALS", "UPLOAD_CRED",
                    "SERVICE_ACCOUNT_CREDENTIAL", "CODECOV_UPLOAD", "SONAR_LOGIN", "SENTRY_DSN_VALUE"])
    return _nth(i // 2, [f"{name}={s}", f"export {name}={s}", f"  {name}: {s}", f"env: {name}=\"{s}\""]), s


@_shape("entropy_signing_option")
def _ent_opt(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(32, 48))
    return _nth(i, [
        f"./release.sh --signing-value {s}",
        f"sign-artifacts --signing-value={s} dist/*.whl",
        f"+ cosign-wrapper --signing-value {s} --image {g.registry()}/{g.app()}",
        f"$ tool publish --signing-value \"{s}\"",
        f"notarize --signing-value {s} --bundle app.zip",
        f"python -m release --signing-value={s} --tag v{g.semver()}",
        f"signer: invoked with --signing-value {s}",
        f"./gradlew sign --signing-value {s}",
    ]), s


@_shape("entropy_custom_auth_header")
def _ent_hdr(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(32, 48))
    name = _nth(i, ["X-Custom-Auth", "X-Internal-Auth", "X-Service-Auth", "X-Upload-Auth"])
    return _nth(i // 4, [
        f"{name}: {s}",
        f"curl -H \"{name}: {s}\" https://{g.host()}/hooks/deploy",
        f"> {name.lower()}: {s}",
        f"-H '{name}: {s}'",
    ]), s


@_shape("entropy_url_query")
def _ent_query(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(32, 48))
    return _nth(i, [
        f"GET https://cdn.example.com/artifacts/build.tar.gz?access={s} 200",
        f"Downloading https://{g.host()}/dl/{g.app()}.zip?v=2&access={s}",
        f"curl -fsSLo tool.tgz 'https://releases.example.com/tool.tgz?access={s}'",
        f"wget https://files.example.net/data.csv?access={s}",
        f"POST https://{g.host()}/upload?access={s}&overwrite=true -> 201",
        f"fetch failed: https://{g.host()}/api/export?format=csv&access={s} (502)",
        f"  url: https://{g.host()}/feed?access={s}",
        f"Redirecting to https://{g.host()}/report?access={s}",
    ]), s


@_shape("kubectl_from_literal")
def _kubectl(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"kubectl create secret generic {g.app()}-db --from-literal=password={s}",
        f"+ kubectl create secret generic db --from-literal=DB_PASSWORD={s} --dry-run=client -o yaml",
        f"kubectl create secret generic api --from-literal=api-key={s}",
        f"kubectl -n ci create secret generic creds --from-literal=username={g.user()} --from-literal=password='{s}'",
        f"$ kubectl create secret generic token --from-literal=token={s}",
        f"kubectl create secret generic {g.app()} --from-literal=SECRET_KEY={s}",
        f"oc create secret generic db --from-literal=password={s}",
        f"kubectl create secret generic x --from-literal=client-secret={s}",
    ]), s


@_shape("helm_set_secret")
def _helm(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"helm upgrade --install {g.app()} ./chart --set db.password={s} --set image.tag={g.semver()}",
        f"+ helm install pg bitnami/postgresql --set auth.postgresPassword={s}",
        f"helm upgrade {g.app()} ./chart --set-string auth.token={s}",
        f"helm template . --set secrets.apiKey={s}",
        f"helm upgrade redis bitnami/redis --set auth.password={s} --wait",
        f"$ helm install rabbit bitnami/rabbitmq --set auth.password=\"{s}\"",
        f"helm upgrade --install app . --set global.registry.password={s}",
        f"helm upgrade x . --set-string config.clientSecret={s}",
    ]), s


@_shape("pgpassword_env")
def _pgpassword(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"PGPASSWORD={s} psql -h {g.host()} -U {g.user()} -c 'select 1'",
        f"+ PGPASSWORD='{s}' pg_dump -h db -U app app > dump.sql",
        f"export PGPASSWORD={s}",
        f"env PGPASSWORD=\"{s}\" pg_isready -h {g.host()}",
        f"PGPASSWORD={s} createdb -h localhost -U postgres test",
        f"$ PGPASSWORD={s} psql \"host=db user=app dbname=app\" -f migrate.sql",
        f"  PGPASSWORD: {s}",
        f"MYSQL_PWD={s} mysql -u root -e 'select 1'",
    ]), s


@_shape("netrc_password")
def _netrc(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"machine github.com login {g.user()} password {s}",
        f"echo \"machine api.heroku.com login {g.user()}@example.com password {s}\" >> ~/.netrc",
        f"+ printf 'machine {g.host()} login {g.user()} password {s}\\n' > ~/.netrc",
        f"machine artifacts.example.com login {g.user()} password {s}",
        f"cat ~/.netrc: machine git.example.com login ci password {s}",
        f"  machine {g.host()} login {g.user()} password {s}",
        f"machine registry.npmjs.org login {g.user()} password {s}",
        f"echo 'machine {g.host()} login {g.user()} password {s}' > $HOME/.netrc",
    ]), s


@_shape("pgpass_line")
def _pgpass(g: _Gen, i: int) -> tuple[str, str]:
    s = g.mixed(g.num(14, 24), ALNUM + "!#%+-._~")
    return _nth(i, [
        f"echo \"{g.host()}:5432:{g.pick(_DBS)}:{g.user()}:{s}\" > ~/.pgpass",
        f"+ echo '*:*:*:postgres:{s}' > ~/.pgpass",
        f"{g.host()}:5432:*:{g.user()}:{s}",
        f"cat ~/.pgpass: db:5432:app:app:{s}",
    ]), s


@_shape("terraform_var")
def _tf_var(g: _Gen, i: int) -> tuple[str, str]:
    s = g.password()
    return _nth(i, [
        f"terraform apply -var \"db_password={s}\" -auto-approve",
        f"+ terraform plan -var='admin_token={s}' -out tfplan",
        f"terraform apply -auto-approve -var api_key={s}",
        f"TF_VAR_db_password={s} terraform apply",
        f"export TF_VAR_client_secret='{s}'",
        f"terragrunt apply -var \"root_password={s}\"",
        f"terraform import -var 'secret_value={s}' aws_db_instance.main main-db",
        f"tofu apply -var \"db_password={s}\"",
    ]), s


def shapes() -> list[str]:
    """The names of all shapes, in corpus order."""
    return list(_SHAPES)


def corpus(seed: int = 7) -> tuple[list[Case], list[str]]:
    """``PER_SHAPE`` cases for every shape, and :func:`negatives` for the same seed.

    Single-line cases get a random raw-log prefix (none, a GitHub timestamp, a clock, a logger prefix);
    multi-line ones (``\\n`` in ``line``) carry their own, one per line. Each shape draws from its own
    RNG seeded from ``seed`` and its name, so adding a shape leaves the others' values alone.
    """
    cases: list[Case] = []
    for name, fn in _SHAPES.items():
        g = _Gen(_sub_seed(seed, name))
        for i in range(PER_SHAPE):
            line, secret = fn(g, i)
            if "\n" not in line:
                line = g.prefix() + line
            if secret not in line or len(secret) < 8:
                raise AssertionError(f"shape {name}: bad case {line!r} / {secret!r}")
            cases.append(Case(name, line, secret))
    return cases, negatives(seed)


def _sub_seed(seed: int, name: str) -> int:
    h = 2166136261  # FNV-1a over the name: stable across runs (str hash is salted)
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return seed * 1_000_003 + h


# --------------------------------------------------------------------------------------------------
# negatives: ordinary CI output that looks like it could hold a secret and does not
# --------------------------------------------------------------------------------------------------

_Neg = Callable[[_Gen, int], str]


def _neg_templates() -> list[_Neg]:
    gh = "${{ secrets.%s }}"
    return [
        # commit SHAs
        lambda g, i: _nth(i, [f"commit {g.hex(40)}", f"HEAD is now at {g.hex(7)} Merge pull request #{g.num(1, 9999)} from {g.repo()}",
                              f"Merge {g.hex(40)} into {g.hex(40)}", f"[main {g.hex(7)}] chore: bump {g.pick(_PKGS)} to {g.semver()}",
                              f" * branch            {g.hex(40)} -> FETCH_HEAD"]),
        lambda g, i: _nth(i, [f"git checkout --progress --force {g.hex(40)}", f"+ git checkout -q {g.hex(40)}",
                              f"Checking out {g.hex(40)}", f"/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --depth=1 origin +{g.hex(40)}:refs/remotes/origin/main",
                              f"git checkout {g.hex(12)}"]),
        # short SHAs
        lambda g, i: _nth(i, [f"Deploying {g.repo()}@{g.hex(7)} to staging", f"{g.hex(7)} fix(auth): refresh token before expiry",
                              f"Version: {g.semver()}+g{g.hex(7)}", f"image: ghcr.io/{g.repo()}:sha-{g.hex(7)}",
                              f"{g.hex(8)} feat: rotate api keys nightly"]),
        # docker digests and image ids
        lambda g, i: _nth(i, [f"#{g.num(2, 30)} sha256:{g.hex(64)} {g.num(1, 90)}.{g.num(0, 99)}MB / {g.num(90, 200)}.0MB {g.num(0, 9)}.{g.num(0, 9)}s done",
                              f"digest: sha256:{g.hex(64)} size: {g.num(500, 9000)}", f"Digest: sha256:{g.hex(64)}",
                              f"#{g.num(2, 30)} writing image sha256:{g.hex(64)} done", f"FROM node:20-alpine@sha256:{g.hex(64)}",
                              f"Status: Downloaded newer image for {g.registry()}/{g.app()}@sha256:{g.hex(64)}"]),
        lambda g, i: _nth(i, [f"Step {g.num(1, 9)}/{g.num(10, 20)} : COPY . .", f" ---> {g.hex(12)}", f"Successfully built {g.hex(12)}",
                              f"Successfully tagged {g.app()}:{g.semver()}", f"#{g.num(2, 30)} [build {g.num(1, 5)}/7] RUN npm ci --no-audit",
                              f"Removing intermediate container {g.hex(12)}"]),
        # UUIDs
        lambda g, i: _nth(i, [f"Job {g.uuid()} started", f"x-request-id: {g.uuid()}", f"Created artifact {g.uuid()} (dist.zip)",
                              f"Run ID: {g.uuid()}", f"correlation_id={g.uuid()} status=ok", f"Trace: {g.uuid()}"]),
        # integrity hashes
        lambda g, i: _nth(i, [f"      \"integrity\": \"sha512-{g.b64(64)}\",", f"  integrity sha512-{g.b64(64)}",
                              f"npm WARN tarball tarball data for {g.pick(_PKGS)}@{g.semver()} (sha512-{g.b64(64)}) seems to be corrupted. Trying again.",
                              f"integrity=\"sha384-{g.b64(48)}\" crossorigin=\"anonymous\"",
                              f"      \"integrity\": \"sha1-{g.b64(20)}\","]),
        # semantic versions
        lambda g, i: _nth(i, [f"Successfully installed {g.pick(_PKGS)}-{g.semver()} {g.pick(_PKGS)}-{g.semver()}",
                              f"Using Node.js v{g.semver()}", f"Bumping version from {g.semver()} to {g.semver()}",
                              f"added {g.num(10, 2000)} packages, and audited {g.num(2000, 3000)} packages in {g.num(2, 60)}s",
                              f"go: downloading golang.org/x/{g.pick(('crypto', 'net', 'sys', 'text'))} v0.{g.num(1, 30)}.0",
                              f"   Compiling ring v0.17.{g.num(0, 9)}"]),
        # URLs without credentials
        lambda g, i: _nth(i, [f"Downloading https://files.pythonhosted.org/packages/{g.hex(2)}/{g.hex(2)}/{g.hex(60)}/{g.pick(_PKGS)}-{g.semver()}-py3-none-any.whl ({g.num(10, 900)} kB)",
                              f"Cloning into '{g.app()}'... https://github.com/{g.repo()}.git",
                              f"Fetched https://{g.host()}/api/v1/builds?page=2&per_page=100 in {g.num(10, 900)}ms",
                              f"remote: Create a pull request for 'feature/token-refresh' on GitHub by visiting: https://github.com/{g.repo()}/pull/new/feature/token-refresh",
                              f"git clone ssh://git@github.com/{g.repo()}.git", f"git remote add upstream git@github.com:{g.repo()}.git",
                              f"Visit https://{g.host()}/login?next=%2Fsettings%2Ftokens to sign in"]),
        # references, not values
        lambda g, i: _nth(i, [f"token: {gh % 'GITHUB_TOKEN'}", f"github-token: {gh % 'GH_PAT'}",
                              f"password: {gh % 'REGISTRY_PASSWORD'}", f"api-key: {gh % 'DD_API_KEY'}",
                              f"  NPM_TOKEN: {gh % 'NPM_TOKEN'}", f"client-secret: {gh % 'AZURE_CLIENT_SECRET'}",
                              f"  AWS_SECRET_ACCESS_KEY: {gh % 'AWS_SECRET_ACCESS_KEY'}"]),
        lambda g, i: _nth(i, ["password: $DB_PASSWORD", "DB_PASSWORD=${DB_PASSWORD:?missing}", "export GITHUB_TOKEN=$GH_PAT",
                              "mysql -u root -p\"$MYSQL_ROOT_PASSWORD\" -e 'select 1'", "curl -u \"$NEXUS_USER:$NEXUS_PASSWORD\" https://nexus.example.com/",
                              "helm repo add charts https://charts.example.com --username ci --password \"$REGISTRY_PASSWORD\"",
                              "curl -H \"Authorization: Bearer $API_TOKEN\" https://api.example.com/v1/deploy",
                              "  token: ${CI_JOB_TOKEN}", "export TWINE_PASSWORD=\"${PYPI_TOKEN}\""]),
        lambda g, i: _nth(i, [f"echo \"$CR_PAT\" | docker login ghcr.io -u {g.user()} --password-stdin", "Login Succeeded",
                              "WARNING! Your password will be stored unencrypted in /home/runner/.docker/config.json.",
                              f"cat ~/token.txt | docker login --username {g.user()} --password-stdin {g.registry()}",
                              "Configure a credential helper to remove this warning. See", "echo \"$VAULT_TOKEN\" | vault login -"]),
        # already masked
        lambda g, i: _nth(i, ["password: ***", "  token: ***", "Authorization: Bearer ***", "export API_KEY=[MASKED]",
                              "DB_PASSWORD=[MASKED]", f"curl -H \"X-API-Key: ***\" https://{g.host()}/v1", "secret=[MASKED]",
                              "  GITHUB_TOKEN: ***", "docker login -u ci -p *** registry.example.com"]),
        # test ids and names
        lambda g, i: _nth(i, [f"tests/test_auth.py::test_token_refresh PASSED [ {g.num(1, 99)}%]",
                              "tests/unit/test_keys.py::TestApiKey::test_rotate_secret_key FAILED",
                              f"tests/test_login.py::test_password_reset[expired-link] PASSED [{g.num(1, 99)}%]",
                              "FAILED tests/api/test_tokens.py::test_revoked_token_is_rejected - AssertionError: assert 401 == 403",
                              "tests/test_config.py::test_secret_key_from_env[missing] SKIPPED (no vault)",
                              "ERROR tests/integration/test_s3.py::test_presigned_url_with_session_token"]),
        lambda g, i: _nth(i, [f"  ✓ should refresh the access token ({g.num(1, 90)} ms)", f"--- PASS: TestTokenExpiry (0.{g.num(10, 99)}s)",
                              "[ RUN      ] KeyStoreTest.LoadsPrivateKey", "test secret_store::tests::rejects_empty_key ... ok",
                              "  ✕ rejects an expired password reset link", "PASS src/auth/password.test.ts",
                              f"[       OK ] TokenBucketTest.RefillsAfterInterval ({g.num(0, 9)} ms)"]),
        # compiler and runtime errors naming secret-ish identifiers
        lambda g, i: _nth(i, [f"src/client.rs:{g.num(1, 300)}:{g.num(1, 40)}: error[E0425]: cannot find value `api_key` in this scope",
                              f"main.go:{g.num(1, 300)}:2: declared and not used: api_key",
                              f"app/client.py:{g.num(1, 300)}: error: Name \"api_key\" is not defined  [name-defined]",
                              f"src/config.ts({g.num(1, 300)},{g.num(1, 40)}): error TS2339: Property 'apiKey' does not exist on type 'Settings'.",
                              "KeyError: 'secret_key'", "TypeError: Client.__init__() missing 1 required positional argument: 'api_key'",
                              "warning: unused variable: `access_token`", "E   AttributeError: 'Settings' object has no attribute 'client_secret'",
                              f"Foo.java:{g.num(1, 300)}: error: cannot find symbol password"]),
        # cache keys
        lambda g, i: _nth(i, [f"Using cache key: linux-node-{g.hex(64)}", f"Cache restored from key: Linux-pip-{g.hex(64)}",
                              f"Cache saved with key: macOS-cargo-{g.hex(64)}", f"Cache not found for input keys: linux-gradle-{g.hex(64)}, linux-gradle-",
                              f"Received {g.num(10**6, 10**9)} of {g.num(10**9, 2 * 10**9)} ({g.num(1, 99)}.0%), {g.num(1, 90)}.{g.num(0, 9)} MBs/sec"]),
        # hashed file names
        lambda g, i: _nth(i, [f"dist/assets/index-{g.mixed(8, B64URL)}.js   {g.num(10, 900)}.{g.num(10, 99)} kB │ gzip: {g.num(5, 90)}.{g.num(10, 99)} kB",
                              f"Uploading artifact: coverage-{g.mixed(20)}.tar.gz",
                              f"  static/js/main.{g.hex(8)}.chunk.js", f"Created temporary directory /tmp/tmp{g.s(8, LOWER_ALNUM + '_')}",
                              f"Wrote /tmp/pytest-of-runner/pytest-0/{g.mixed(12)}/report.xml",
                              f"  .next/static/chunks/pages/_app-{g.hex(16)}.js"]),
        # Maven coordinates
        lambda g, i: _nth(i, [f"[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/org/apache/commons/commons-lang3/{g.semver()}/commons-lang3-{g.semver()}.jar ({g.num(10, 900)} kB at {g.num(1, 9)}.{g.num(0, 9)} MB/s)",
                              f"[INFO] --- maven-surefire-plugin:3.2.5:test (default-test) @ {g.app()} ---",
                              f"[INFO] Building {g.app()} {g.semver()}-SNAPSHOT",
                              f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.13.0:compile (default-compile) on project {g.app()}: Compilation failure",
                              f"com.example:{g.app()}:jar:{g.semver()}:compile", "io.jsonwebtoken:jjwt-api:jar:0.12.5:compile"]),
        # SSH and GPG key fingerprints: public, high entropy
        lambda g, i: _nth(i, [f"ED25519 key fingerprint is SHA256:{g.b64(32)[:43]}.",
                              f"Warning: Permanently added '{g.host()}' (ED25519) to the list of known hosts.",
                              f"The key fingerprint is: SHA256:{g.b64(32)[:43]} runner@fv-az{g.num(100, 999)}-{g.num(100, 999)}",
                              f"gpg: key {g.hex(16).upper()}: public key \"Docker Release (CE deb) <docker@docker.com>\" imported",
                              f"Identity added: /home/runner/.ssh/id_ed25519 ({g.user()}@{g.host()})",
                              f"gpg --keyserver keyserver.ubuntu.com --recv-keys {g.hex(40).upper()}"]),
        # go.sum and pip hashes: base64 / hex content hashes
        lambda g, i: _nth(i, [f"golang.org/x/text v0.{g.num(1, 20)}.0 h1:{g.b64(32)}", f"github.com/{g.repo()} v{g.semver()}/go.mod h1:{g.b64(32)}",
                              f"    --hash=sha256:{g.hex(64)}", f"Collecting tokenizers<0.19,>=0.14 (from transformers=={g.semver()})",
                              f"Requirement already satisfied: cryptography>={g.semver()} in ./.venv/lib/python3.11/site-packages"]),
        # non-secret key=value
        lambda g, i: _nth(i, [f"cache-key=node-modules-{g.hex(40)}", "partition_key=user_id", "sort_key: created_at", "primary_key=id",
                              f"keyring: using backend {g.pick(('SecretService', 'null', 'chainer'))}", f"max_tokens: {g.num(256, 8192)}",
                              f"token_count={g.num(1, 9999)}", f"KEY_PREFIX=ci-{g.app()}", f"idempotency_key={g.uuid()}"]),
        # identity and OIDC messages without values
        lambda g, i: _nth(i, ["Token expires in 3600 seconds", "Requesting OIDC token for audience sts.amazonaws.com",
                              f"Assumed role arn:aws:iam::{g.s(12, string.digits)}:role/{g.app()}-deploy (session GitHubActions)",
                              "Successfully configured AWS credentials", "Masking 3 secrets",
                              f"Refreshing access token for service account ci-deployer@{g.app()}.iam.gserviceaccount.com",
                              f"Authenticated to Vault at https://vault.example.com as role {g.app()}"]),
        # GitHub Actions housekeeping
        lambda g, i: _nth(i, [f"Download action repository 'actions/checkout@v4' (SHA:{g.hex(40)})", f"Run actions/setup-node@{g.hex(40)}",
                              "Prepare workflow directory", "##[group]Run actions/cache@v4", "Secret source: Actions",
                              "##[debug]Evaluating: secrets.GITHUB_TOKEN", "##[debug]Result: '***'"]),
        # Kubernetes
        lambda g, i: _nth(i, [f"pod/{g.app()}-{g.s(10, LOWER_ALNUM)}-{g.s(5, LOWER_ALNUM)} created", f"deployment.apps/{g.app()} configured",
                              f"secret/{g.app()}-tls configured", f"serviceaccount/{g.app()} created",
                              f"Waiting for deployment \"{g.app()}\" rollout to finish: 1 of 3 updated replicas are available...",
                              f"secret/{g.app()}-db-credentials unchanged"]),
        # Terraform
        lambda g, i: _nth(i, [f"aws_s3_bucket.logs: Refreshing state... [id={g.app()}-logs]", "Plan: 3 to add, 0 to change, 0 to destroy.",
                              f"aws_secretsmanager_secret.db: Creation complete after 1s [id=arn:aws:secretsmanager:us-east-1:{g.s(12, string.digits)}:secret:db-password-{g.mixed(6)}]",
                              f"aws_iam_access_key.ci: Refreshing state... [id={g.app()}-ci]",
                              "random_password.db: Creation complete after 0s [id=none]",
                              f"module.vpc.aws_subnet.private[0]: Creation complete after 2s [id=subnet-{g.hex(17)}]"]),
        # checksums
        lambda g, i: _nth(i, [f"MD5 (dist/{g.app()}.tar.gz) = {g.hex(32)}", f"{g.hex(40)}  dist/{g.app()}-{g.semver()}.tar.gz",
                              f"Checksum OK: {g.hex(64)}", f"sha256sum: {g.hex(64)}  {g.app()}.zip", f"ETag: \"{g.hex(32)}\""]),
        # Gradle / npm / cargo chatter
        lambda g, i: _nth(i, [f"> Task :{g.app()}:compileKotlin", f"BUILD SUCCESSFUL in {g.num(2, 300)}s",
                              f"Download https://plugins.gradle.org/m2/com/gradle/plugin-publish/{g.semver()}/plugin-publish-{g.semver()}.pom",
                              f"npm WARN deprecated {g.pick(_PKGS)}@{g.semver()}: this version is no longer supported",
                              f"    Finished `release` profile [optimized] target(s) in {g.num(2, 300)}.{g.num(10, 99)}s",
                              f"npm notice New minor version of npm available! {g.semver()} -> {g.semver()}"]),
        # password/key/token words in prose
        lambda g, i: _nth(i, ["Password must be at least 12 characters", f"AssertionError: password hash mismatch for user {g.user()}",
                              "bcrypt: cost factor 12", "The password for user 'ci' will expire in 7 days",
                              "Generating a new SSH key pair", "Rotating API keys for 3 services", "Token bucket refilled: 100/100",
                              "Reading secret from stdin", "Using key vault 'kv-prod-weu' in resource group 'rg-ci'"]),
        # secret stores: names and paths, not values
        lambda g, i: _nth(i, [f"Fetching secret projects/{g.app()}/secrets/db-password/versions/latest",
                              f"vault kv get -field=password secret/ci/{g.app()}",
                              f"aws secretsmanager get-secret-value --secret-id {g.app()}/db --query SecretString",
                              f"az keyvault secret show --vault-name kv-{g.app()} --name api-key --query value",
                              f"gcloud secrets versions access latest --secret={g.app()}-token",
                              f"sops -d secrets/{g.app()}.enc.yaml > /dev/null"]),
        # data URIs, base64 of non-secrets
        lambda g, i: _nth(i, [f"- Expected  <img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{g.b64(30)}\">",
                              f"Content-MD5: {g.b64(16)}", f"x-amz-id-2: {g.b64(48)}", f"x-goog-hash: crc32c={g.b64(4)}, md5={g.b64(16)}",
                              f"snapshot: {g.b64(24)}"]),
        # numbers, ids
        lambda g, i: _nth(i, [f"Artifact ID {g.num(10**8, 10**10)}", f"Runner: fv-az{g.num(100, 999)}-{g.num(100, 999)}",
                              f"##[notice]Build #{g.num(100, 9999)} finished in {g.num(1, 59)}m {g.num(0, 59)}s",
                              f"Tokens used: {g.num(100, 9999)} (prompt {g.num(10, 999)}, completion {g.num(10, 999)})",
                              f"Ran {g.num(10, 2000)} tests in {g.num(1, 300)}.{g.num(100, 999)}s", "OK (skipped=3)"]),
        # git log and ref chatter
        lambda g, i: _nth(i, [" * [new branch]      feature/api-key-rotation -> origin/feature/api-key-rotation",
                              f"Switched to a new branch 'fix/token-{g.num(100, 999)}'", f"Author: {g.user()} <{g.user()}@users.noreply.github.com>",
                              f"   {g.hex(7)}..{g.hex(7)}  main -> main", f"tag v{g.semver()} -> {g.hex(40)}"]),
        # config echoes without secret values
        lambda g, i: _nth(i, ["auth: none", "authentication: disabled", f"token_endpoint: https://{g.host()}/oauth/token",
                              "key_size: 4096", "password_policy: strict", "secret_backend: vault", f"api_version: {g.semver()}",
                              "tokenizer: bert-base-uncased", "keepalive: 30s"]),
        # Jenkins and GitLab runner noise
        lambda g, i: _nth(i, ["[Pipeline] withCredentials", "Masking supported pattern matches of $PASSWORD or $USERNAME",
                              f"Running with gitlab-runner 16.{g.num(0, 11)}.{g.num(0, 5)} ({g.hex(8)})",
                              "Getting source from Git repository", f"Fetching changes with git depth set to {g.num(1, 50)}...",
                              "Created fresh repository.", "[Pipeline] sh", f"Checking out Revision {g.hex(40)} (refs/remotes/origin/main)"]),
        # pinned tool downloads with digests
        lambda g, i: _nth(i, [f"Downloading https://github.com/{g.repo()}/releases/download/v{g.semver()}/tool_linux_amd64.tar.gz#sha256={g.hex(64)}",
                              f"Verified checksum {g.hex(64)} for tool_linux_amd64.tar.gz",
                              f"uses: docker/login-action@{g.hex(40)} # v3",
                              f"ghcr.io/{g.repo()}@sha256:{g.hex(64)}"]),
        # JSON responses without secrets
        lambda g, i: _nth(i, [f"{{\"id\": {g.num(1, 10**6)}, \"status\": \"completed\", \"conclusion\": \"failure\"}}",
                              "{\"token_type\": \"Bearer\", \"expires_in\": 3600, \"scope\": \"read:packages\"}",
                              f"{{\"key\": \"{g.app()}\", \"value\": {g.num(1, 999)}}}",
                              f"{{\"sha\": \"{g.hex(40)}\", \"ref\": \"refs/heads/main\"}}",
                              "{\"secret_name\": \"DB_PASSWORD\", \"visibility\": \"private\"}"]),
    ]


def negatives(seed: int = 7) -> list[str]:
    """Lines with no secret that must come through :func:`redact` unchanged (deduplicated)."""
    out: list[str] = []
    seen: set[str] = set()
    for k, tpl in enumerate(_neg_templates()):
        g = _Gen(_sub_seed(seed, f"negative-{k}"))
        for i in range(N_NEGATIVE_PER_TEMPLATE):
            line = g.prefix() + tpl(g, i)
            if line not in seen:
                seen.add(line)
                out.append(line)
    return out


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------

def redact_case(line: str) -> str:
    """What the guard stores for ``line``: ``redact`` for one line, ``redact_lines`` for several."""
    from healing_guard.patterns.tokenize import redact, redact_lines

    if "\n" in line:
        return "\n".join(redact_lines(line.split("\n")))
    return redact(line)


def leaked(case: Case, out: str) -> bool:
    """Whether any part of ``case.secret`` is left in ``out``: the whole secret, or a ``PIECE``-character
    run of it that is not also in the rest of the line (a prefix like ``pypi-AgEI`` printed elsewhere)."""
    s = case.secret
    if s in out:
        return True
    context = case.line.replace(s, "\x00")
    n = min(PIECE, len(s))
    return any(p in out and p not in context for p in (s[k:k + n] for k in range(len(s) - n + 1)))


def score(cases: Sequence[Case], negatives: Sequence[str], *, show: int = 10) -> dict[str, Any]:
    """Recall over ``cases`` (overall and per shape), false-positive rate over ``negatives``, and the
    first ``show`` misses and changed negatives."""
    from healing_guard.patterns.tokenize import redact

    by_shape: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # caught, total
    misses: list[dict[str, str]] = []
    partial: list[dict[str, str]] = []
    caught = exact = 0
    for c in cases:
        out = redact_case(c.line)
        gone = c.secret not in out
        ok = gone and not leaked(c, out)
        exact += gone
        caught += ok
        by_shape[c.shape][0] += ok
        by_shape[c.shape][1] += 1
        if not ok:
            (partial if gone else misses).append({"shape": c.shape, "line": c.line, "output": out, "secret": c.secret})
    changed = [(n, r) for n, r in ((n, redact(n)) for n in negatives) if r != n]
    per_shape = {k: v[0] / v[1] for k, v in by_shape.items()}
    missed_shapes = sorted((k for k, v in per_shape.items() if v < 1.0), key=lambda k: (per_shape[k], k))
    return {
        "cases": len(cases),
        "shapes": len(by_shape),
        "negatives": len(negatives),
        "recall": caught / len(cases) if cases else float("nan"),
        "recall_exact": exact / len(cases) if cases else float("nan"),
        "fp_rate": len(changed) / len(negatives) if negatives else float("nan"),
        "fp_count": len(changed),
        "per_shape": per_shape,
        "missed_shapes": missed_shapes,
        "misses": (misses + partial)[:show],
        "partial_leaks": len(partial),
        "miss_count": len(misses) + len(partial),
        "changed_negatives": [{"line": n, "output": r} for n, r in changed[:show]],
    }


def _print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(width=max(120, Console().width))
    con.print(f"secret redaction: {res['cases']} cases in {res['shapes']} shapes, {res['negatives']} negatives")
    t = Table()
    t.add_column("shape")
    t.add_column("recall", justify="right")
    for name, r in sorted(res["per_shape"].items(), key=lambda kv: (kv[1], kv[0])):
        t.add_row(name, f"[{'green' if r == 1 else 'red'}]{r:.0%}[/]")
    con.print(t)
    con.print(f"recall {res['recall']:.1%} (whole secret gone: {res['recall_exact']:.1%}, partial leaks: "
              f"{res['partial_leaks']})   false positives {res['fp_rate']:.1%} ({res['fp_count']}/{res['negatives']})")
    con.print(f"missed shapes ({len(res['missed_shapes'])}): " + escape(", ".join(res["missed_shapes"]) or "none"))
    if res["misses"]:
        con.print(f"\nfirst misses (of {res['miss_count']}):")
        for m in res["misses"]:
            con.print(f"  [bold]{m['shape']}[/]: " + escape(repr(m["output"])), soft_wrap=True)
    if res["changed_negatives"]:
        con.print(f"\nfirst changed negatives (of {res['fp_count']}):")
        for m in res["changed_negatives"]:
            con.print("  " + escape(repr(m["line"])) + "\n    -> " + escape(repr(m["output"])), soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    ap.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    ap.add_argument("--show", type=int, default=10, help="misses and changed negatives to list (default 10)")
    args = ap.parse_args(argv)
    cases, negs = corpus(args.seed)
    res = score(cases, negs, show=args.show)
    if args.json:
        print(json.dumps({"seed": args.seed, **res}, sort_keys=False))
    else:
        _print_table(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
