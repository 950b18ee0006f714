-- Vector Lua (v2) transform: turns the file source's line events into the guard's ci.logs chunks.
--
-- A log file's path names its job: <GUARD_LOG_DIR>/<provider>/<owner>/<repo>/<job_id>[.<attempt>].log
-- (a GitLab owner may span several directories: group/subgroup). Lines of one file are gathered into
-- chunks of at most CHUNK_LINES lines or CHUNK_BYTES bytes, numbered from seq 0 without gaps, the way
-- `guard forward` cuts them; a partial chunk is flushed once its file has been quiet for IDLE_SECONDS
-- (all but its last line), and the last chunk is marked eof once the file has been quiet for
-- EOF_SECONDS. A line longer than PIECE_BYTES is cut into
-- pieces, never dropped. A file whose path does not name a job goes to the dead-letter topic with the
-- reason, line by line: nothing is dropped silently. So does the rest of a file that Vector resumed in
-- the middle after a restart (its first line event has a non-zero offset): the Lua state with the
-- file's chunk numbers did not survive the restart.
--
-- Lua 5.4, loaded by vector.yaml with require(). Its hooks are run by tests/unit/test_vector_config.py
-- in lupa's Lua 5.4, so the chunking is tested without a Vector binary.

CHUNK_LINES = 500
CHUNK_BYTES = 524288        -- well under Kafka's default 1 MB message limit, even with JSON escaping
PIECE_BYTES = 262144
IDLE_SECONDS = 2
EOF_SECONDS = 300
LOG_ROOT = "/var/log/ci"    -- replaced from GUARD_LOG_DIR by vector.yaml
PROVIDERS = { github = true, gitlab = true, jenkins = true, circleci = true }

now = os.time              -- a global so that tests can drive the clock
local files = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local k = #out
    out[k + 1] = B64:sub((n >> 18) + 1, (n >> 18) + 1)
    out[k + 2] = B64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
    out[k + 3] = b and B64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "="
    out[k + 4] = c and B64:sub((n & 63) + 1, (n & 63) + 1) or "="
  end
  return table.concat(out)
end

local function split(path)
  local parts = {}
  for p in string.gmatch(path, "[^/]+") do parts[#parts + 1] = p end
  return parts
end

-- the job a log file belongs to, or nil and the reason
function parse_path(path)
  local root = split(LOG_ROOT)
  local parts = split(path)
  for i = 1, #root do
    if parts[i] ~= root[i] then
      return nil, "log file is not under " .. LOG_ROOT
    end
  end
  local rest = {}
  for i = #root + 1, #parts do rest[#rest + 1] = parts[i] end
  if #rest < 4 then
    return nil, "log file path must be <provider>/<owner>/<repo>/<job_id>[.<attempt>].log under " .. LOG_ROOT
  end
  local provider = rest[1]
  if not PROVIDERS[provider] then
    return nil, "unknown provider '" .. provider .. "' (github, gitlab, jenkins or circleci)"
  end
  local name = rest[#rest]
  if #name < 5 or name:sub(-4) ~= ".log" then
    return nil, "log file name must end in .log"
  end
  name = name:sub(1, -5)
  local job_id, attempt = name, 1
  local j, a = string.match(name, "^(.+)%.(%d+)")
  if j ~= nil and a == name:sub(#j + 2) then
    job_id, attempt = j, tonumber(a)
  end
  if attempt < 1 then
    return nil, "attempt in the file name must be >= 1"
  end
  local owner = table.concat(rest, "/", 2, #rest - 2)
  return {
    provider = provider, owner = owner, repo = rest[#rest - 1], job_id = job_id, attempt = attempt,
    job_key = provider .. "/" .. owner .. "/" .. rest[#rest - 1] .. "/" .. job_id,
  }
end

-- ships the gathered lines but the last `keep` ones (never an empty chunk: Vector would encode an empty
-- Lua table as an object, not a list)
local function flush(f, emit, eof, keep)
  local n = #f.lines - (keep or 0)
  if n <= 0 then return end
  local lines, rest, rest_bytes = {}, {}, 0
  for i = 1, #f.lines do
    if i <= n then lines[i] = f.lines[i] else rest[#rest + 1] = f.lines[i]; rest_bytes = rest_bytes + #f.lines[i] + 1 end
  end
  emit({ log = {
    guard_kind = "chunk",
    provider = f.job.provider, owner = f.job.owner, repo = f.job.repo, job_id = f.job.job_id,
    attempt = f.job.attempt, job_key = f.job.job_key,
    seq = f.seq, lines = lines, first_line = f.first_line, eof = eof, ts = now(),
  } })
  f.seq = f.seq + 1
  f.first_line = f.first_line + n
  f.lines, f.bytes = rest, rest_bytes
end

local function deadletter(path, message, reason, emit)
  emit({ log = {
    guard_kind = "deadletter", source_topic = "vector:file:" .. path, reason = reason,
    original_b64 = base64(message), original_size = #message, key = path, ts = now(),
  } })
end

function init(emit)
  files = {}
end

function process(event, emit)
  local path = event.log.file or ""
  local message = event.log.message or ""
  local f = files[path]
  if f == nil then
    local job, reason = parse_path(path)
    if job == nil then
      deadletter(path, message, reason, emit)
      return
    end
    f = { job = job, seq = 0, first_line = 1, lines = {}, bytes = 0, last = now(), eof = false }
    local offset = tonumber(event.log.offset)
    if offset ~= nil and offset > 0 then
      -- Vector restarted in the middle of this file: chunks would start again at seq 0 and the guard
      -- would drop them as duplicates, so the rest of this log goes to the dead-letter topic instead
      f.resumed = offset
    end
    files[path] = f
  end
  if f.resumed ~= nil then
    f.last = now()
    deadletter(path, message, "Vector resumed this log at byte " .. math.tointeger(f.resumed) ..
      " after a restart: chunk numbers are lost (resend the whole log with guard forward)", emit)
    return
  end
  if f.eof then
    -- the file grew after it was declared complete: a new job attempt writes a new file
    deadletter(path, message, "line after the log was shipped with eof (write each attempt to its own file)", emit)
    return
  end
  if message:sub(-1) == "\r" then message = message:sub(1, -2) end
  local i = 1
  repeat
    local piece = message:sub(i, i + PIECE_BYTES - 1)
    if #f.lines >= CHUNK_LINES or (#f.lines > 0 and f.bytes + #piece > CHUNK_BYTES) then
      flush(f, emit, false)
    end
    f.lines[#f.lines + 1] = piece
    f.bytes = f.bytes + #piece + 1
    i = i + PIECE_BYTES
  until i > #message
  f.last = now()
end

function flush_idle(emit)
  local t = now()
  for path, f in pairs(files) do
    if not f.eof then
      if t - f.last >= EOF_SECONDS then
        flush(f, emit, true)
        f.eof = true
      elseif t - f.last >= IDLE_SECONDS then
        flush(f, emit, false, 1)  -- the last line waits: the eof chunk carries it
      end
    elseif t - f.last >= 24 * 3600 then
      files[path] = nil  -- bounded state: forget files a day after their eof
    end
  end
end

function shutdown(emit)
  -- ship what is gathered; the log is not complete yet, so no eof
  for _, f in pairs(files) do
    if not f.eof then flush(f, emit, false) end
  end
end
