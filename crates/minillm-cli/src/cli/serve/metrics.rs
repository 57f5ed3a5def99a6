//! `GET /metrics`: the server's counters in Prometheus' text format, as vLLM and llama.cpp's
//! server expose theirs: requests by endpoint and status, tokens read and written, requests
//! waiting and decoding, and histograms of the time to the first token and between tokens.
//!
//! Everything is an atomic counter updated where it happens (the engine thread for tokens and
//! timings, a middleware for requests), so reading the metrics never waits on generation.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: from a cache-resident model's fraction of a
/// millisecond to a long prompt's prefill.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// The sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Requests answered, by (path, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Requests waiting for a slot, and requests decoding (slots in use): set by the engine.
    pub waiting: AtomicU64,
    pub decoding: AtomicU64,
    pub time_to_first_token: Histogram,
    pub time_per_token: Histogram,
}

impl Metrics {
    /// Counts one answered request. Paths outside the server's own are counted together, so a
    /// scanner cannot grow the table without bound.
    pub fn answered(&self, path: &str, status: u16) {
        const KNOWN: [&str; 11] = [
            "/v1/embeddings",
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/models",
            "/tokenize",
            "/detokenize",
            "/tokenizer_info",
            "/health",
            "/metrics",
        ];
        let path = if KNOWN.contains(&path) || path.starts_with("/v1/models/") { path } else { "other" };
        let path = if path.starts_with("/v1/models/") { "/v1/models/{id}" } else { path };
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((path.to_string(), status)).or_default() += 1;
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP minillm_requests_total Requests answered, by path and HTTP status.\n");
        out.push_str("# TYPE minillm_requests_total counter\n");
        for ((path, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "minillm_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}");
        }
        let counters = [
            ("minillm_prompt_tokens_total", "counter", "Prompt tokens prefilled.", &self.prompt_tokens),
            ("minillm_generation_tokens_total", "counter", "Tokens generated.", &self.generated_tokens),
            ("minillm_requests_waiting", "gauge", "Requests waiting for a decoding slot.", &self.waiting),
            ("minillm_requests_running", "gauge", "Requests decoding (slots in use).", &self.decoding),
        ];
        for (name, kind, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.time_to_first_token.write(
            &mut out,
            "minillm_time_to_first_token_seconds",
            "From a request reaching the engine to its first token.",
        );
        self.time_per_token.write(
            &mut out,
            "minillm_time_per_output_token_seconds",
            "Between two tokens of a request.",
        );
        out
    }
}
