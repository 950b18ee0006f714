"""Values the CI platform masks (``::add-mask::``, credentials in the environment) are masked by the guard
wherever they appear later in the same log, and are stored nowhere, not even in the window."""

from __future__ import annotations

import io

import orjson

from healing_guard.classify.log_stream import analyze_stream
from healing_guard.engine.core import Engine
from healing_guard.engine.window import JobWindow, Ready
from healing_guard.patterns import masks
from healing_guard.patterns import Matcher, load_library
from healing_guard.patterns.tokenize import REDACTED
from healing_guard.platforms.forward import log_chunks
from healing_guard.schemas import JobEvent, LogChunk
from healing_guard.settings import Settings

NOW = 1_767_225_600.0
#: no shape any rule knows: only the mask can find it
SECRET = "plain-words-Correct-Horse-9"


def test_a_registered_value_is_masked_at_token_boundaries_only() -> None:
    found: list[masks.Mask] = []
    assert masks.learn([f"::add-mask::{SECRET}"], found)
    lines = [f"login as deploy with {SECRET}", f'{{"pw":"{SECRET}"}}', f"url=https://u:{SECRET}@host/x",
             f"x{SECRET}", f"{SECRET}y", "nothing here"]
    out = masks.apply(lines, found)
    assert out[:3] == [f"login as deploy with {REDACTED}", f'{{"pw":"{REDACTED}"}}',
                       f"url=https://u:{REDACTED}@host/x"]
    assert out[3:] == lines[3:]  # part of a longer word: not this value
    assert masks.apply(["nothing"], found) == ["nothing"]


def test_short_and_placeholder_values_are_not_learned() -> None:
    found: list[masks.Mask] = []
    assert not masks.learn(["::add-mask::abc", "::add-mask::$TOKEN", "::add-mask::***", "no command"], found)
    assert found == []


def test_masks_hold_no_secret_and_survive_json() -> None:
    found: list[masks.Mask] = []
    masks.learn([f"echo '::add-mask::{SECRET}'"[:-1]], found)  # the value ends the line
    stored = orjson.loads(orjson.dumps(found))
    assert SECRET not in orjson.dumps(stored).decode()
    assert not masks.learn([f"::add-mask::{SECRET}"], stored)  # a stored (list) mask is the same mask
    assert masks.apply([f"pw {SECRET}"], stored) == [f"pw {REDACTED}"]


def test_credentials_in_the_environment_are_masks_other_variables_are_not() -> None:
    env = {"DEPLOY_TOKEN": SECRET, "DB_PASSWORD": "hunter2hunter", "GITHUB_TOKEN": "ghs_" + "a" * 36,
           "TOKENIZERS_PARALLELISM": "false", "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock", "AUTH_RETRIES": "3",
           "HOME": "/home/runner", "CI_JOB_NAME": "build", "MY_SECRET": "***", "NPM_TOKEN": "test"}
    found = masks.from_environ(env)
    assert {masks.mask_of(v) for v in (SECRET, "hunter2hunter", "ghs_" + "a" * 36)} == set(found)


def _window_chunks(lines: list[str], split: int) -> list[LogChunk]:
    return [LogChunk(provider="github", owner="acme", repo="web", job_id="7", seq=0, lines=lines[:split],
                     first_line=1, eof=False),
            LogChunk(provider="github", owner="acme", repo="web", job_id="7", seq=1, lines=lines[split:],
                     first_line=split + 1, eof=True)]


LOG = ["Run ./deploy.sh", f"::add-mask::{SECRET}", "connecting", f"Error: authentication failed for {SECRET}",
       f"fatal: could not read Password for 'https://{SECRET}@github.com': terminal prompts disabled",
       "Error: Process completed with exit code 128."]


def _decide(order: list[int]) -> tuple[JobWindow, Ready]:
    engine = Engine(Settings(tail_lines=10))
    w = JobWindow(job_key="github/acme/web/7")
    chunks = _window_chunks(LOG, 2)
    stored: list[bytes] = []
    for i in order:
        w, _ = engine.chunk(w, chunks[i], NOW)
        stored.append(orjson.dumps(w.to_dict()))  # what the changelog would hold
    done = JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="deploy", status="completed",
                    conclusion="failure", log_chunks=2, started_at=NOW - 60, completed_at=NOW)
    w, out = engine.job_event(w, done, NOW)
    assert len(out) == 1 and isinstance(out[0], Ready)
    # stored from the moment the value was registered on; a chunk that came before its add-mask line and
    # waits for it is stored with the ordinary redaction only (nothing could know the value yet), as raw as
    # on ci.logs, and masked as soon as the add-mask line arrives
    assert SECRET.encode() not in stored[-1] and SECRET.encode() not in orjson.dumps(w.to_dict())
    return w, out[0]


def test_the_window_masks_the_value_in_later_chunks_in_either_order() -> None:
    for order in ([0, 1], [1, 0]):  # the second chunk may arrive first and wait: it is stored then
        _, ready = _decide(order)
        texts = [e.text for e in ready.evidence] + list(ready.tail) + [e.text for e in ready.located]
        assert texts and not any(SECRET in t for t in texts), (order, texts)
        assert any(REDACTED in t for t in texts)


def test_a_log_file_analysed_locally_masks_the_value_too() -> None:
    a = analyze_stream(io.BytesIO("\n".join(LOG).encode()), Matcher(load_library()))
    texts = [e.text for e in a.diagnosis.evidence] + list(a.tail)
    assert not any(SECRET in t for t in texts) and any(REDACTED in t for t in texts)


def test_guard_forward_masks_environment_credentials_and_registered_values() -> None:
    env_secret = "env-only-Value-4711"
    raw = "\n".join(LOG + [f"password is {env_secret}"]).encode()
    chunks = list(log_chunks([raw], provider="github", owner="acme", repo="web", job_id="7",
                             masks=masks.from_environ({"DEPLOY_TOKEN": env_secret})))
    sent = b"".join(c.to_json() for c in chunks)
    assert SECRET.encode() not in sent and env_secret.encode() not in sent
    assert b"::add-mask::" + REDACTED.encode() in sent
    # without masks the lines go as read (the worker redacts what it can recognise)
    plain = b"".join(c.to_json() for c in log_chunks([raw], provider="github", owner="acme", repo="web", job_id="7"))
    assert env_secret.encode() in plain


def test_chunks_held_back_are_masked_when_the_value_is_registered() -> None:
    engine = Engine(Settings(tail_lines=10))
    w = JobWindow(job_key="github/acme/web/7")
    mk = [LogChunk(provider="github", owner="acme", repo="web", job_id="7", seq=i, lines=lines, first_line=i * 2 + 1)
          for i, lines in enumerate([LOG[:1] + ["x"], LOG[1:3], LOG[3:5]])]
    w, _ = engine.chunk(w, mk[2], NOW)  # waits for 0 and 1, with the value in it
    w, _ = engine.chunk(w, mk[1], NOW)  # registers the value; chunk 0 still missing, both wait
    assert sorted(w.pending) == [1, 2]
    stored = orjson.dumps(w.to_dict())
    assert SECRET.encode() not in stored and REDACTED.encode() in stored
