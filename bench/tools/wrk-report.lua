-- wrk `done` hook: print one machine-readable line the harness parses, instead of
-- scraping wrk's human output (whose latency units change between us/ms/s).
-- Latencies are in microseconds, duration in microseconds.
-- No request()/response() hooks are defined, on purpose: they would slow wrk down.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sock_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
