-- wrk script for make bench.  BENCH_MODE picks the request:
--   event   POST /event bodies (~200 B) cycling over 20 event types
--   post    the same bodies POSTed to BENCH_PATH (a static file: the ceiling)
--   get     GET BENCH_PATH (with BENCH_ACCEPT as Accept when set)
-- BENCH_BODY=<bytes> (event and post) sends bodies of about that size
-- instead: a reading with a long series of numbers, cycling over 20 types
-- spectrum<bytes>-00..19 (made once per thread; bench/scaling.py).
-- done() prints one machine-readable line for bench/bench.py.
local mode = os.getenv("BENCH_MODE") or "get"
local path = os.getenv("BENCH_PATH") or "/"
local accept = os.getenv("BENCH_ACCEPT")
local size = tonumber(os.getenv("BENCH_BODY") or "")
local get_headers = accept and { ["Accept"] = accept } or nil
local n = 0

local function body(i)
  return string.format(
    '{"type":"weather%02d","data":{"sky":"clear","temp_c":%d.5,' ..
    '"humidity":0.42,"wind_kph":[3.1,4.7,2.2],"safe":true,' ..
    '"station":"pan001-aag"},"meta":{"unit":"PAN001","source":"bench",' ..
    '"seq_hint":%d}}', i % 20, i % 40, i)
end

local function big_body(t)
  local head = string.format(
    '{"type":"spectrum%d-%02d","data":{"station":"pan001-cam",' ..
    '"counts":[', size, t)
  local tail = ']},"meta":{"unit":"PAN001","source":"bench"}}'
  local parts, len, k = {}, #head + #tail, 0
  while len < size do
    local x = string.format("%s%d.%d", k > 0 and "," or "",
                            (t * 31 + k) % 997, k % 10)
    parts[#parts + 1] = x
    len = len + #x
    k = k + 1
  end
  return head .. table.concat(parts) .. tail
end

local bigs = nil
if size then
  bigs = {}
  for t = 0, 19 do
    bigs[t] = big_body(t)
  end
end

request = function()
  n = n + 1
  if mode == "get" then
    return wrk.format("GET", path, get_headers)
  end
  return wrk.format("POST", path,
                    { ["Content-Type"] = "application/json" },
                    bigs and bigs[n % 20] or body(n))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d " ..
    "status=%d timeout=%d p50_us=%d p99_us=%d mean_us=%d bytes=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    math.floor(latency.mean), summary.bytes))
end
