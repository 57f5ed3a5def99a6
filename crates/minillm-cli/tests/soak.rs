//! The server under load and abuse for a bounded time: many concurrent clients mixing streamed
//! and plain requests on both APIs, clients that hang up mid-stream, malformed bodies, and
//! requests at every limit (context, max_tokens, n, stop strings, logit_bias, body size). Every
//! request is answered (200, or 400 / 413 / 429 in the API's error shape), no slot leaks, and
//! the server's memory stays flat. Prints the request count, the answers by status, p50/p99
//! latency and memory, the figures the README's reliability table reports.
//!
//! `MINILLM_SOAK_SECONDS` sets the duration (default 20; `scripts/bench/soak.sh` runs longer).

mod common;

use common::{agent, serve};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const CLIENTS: usize = 24;

/// What one request got: its kind, the HTTP status, the time to the whole answer.
struct Outcome {
    kind: &'static str,
    status: u16,
    took: Duration,
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends `body` to `path`; the status and the body text (an error if the connection failed).
fn send(url: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut resp = agent()
        .post(&format!("{url}{path}"))
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    resp.body_mut().as_reader().read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), text))
}

/// Checks the answer's shape for its status; panics with the request's kind when it is wrong.
fn check(kind: &str, status: u16, text: &str, streamed: bool) {
    match status {
        200 if streamed => assert!(
            text.contains("data: [DONE]") || text.contains("event: message_stop"),
            "{kind}: a stream that did not end: {text}"
        ),
        200 => {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{kind}: {e}: {text}"));
            assert!(v.get("choices").is_some() || v.get("content").is_some(), "{kind}: {text}");
        }
        400 | 413 | 429 => {
            let v: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{kind} ({status}): {e}: {text}"));
            assert!(v["error"].is_object(), "{kind} ({status}): not in the API's error shape: {text}");
        }
        other => panic!("{kind}: HTTP {other}: {text}"),
    }
}

/// A request chosen by `pick` (a number from the client's own sequence).
fn one_request(url: &str, address: &str, pick: u64) -> Option<Outcome> {
    let chat = |max: u32, stream: bool| json!({"model": "tiny", "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": max, "stream": stream});
    let (kind, path, body, streamed): (&'static str, &str, String, bool) = match pick % 12 {
        0..=2 => ("chat", "/v1/chat/completions", chat(8, false).to_string(), false),
        3..=5 => (
            "completion stream",
            "/v1/completions",
            json!({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 12, "stream": true})
                .to_string(),
            true,
        ),
        6 => (
            "anthropic",
            "/v1/messages",
            json!({"model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
                .to_string(),
            false,
        ),
        7 => {
            // Hangs up after the first bytes of a stream: the server must free its slot.
            let start = Instant::now();
            let body = chat(40, true).to_string();
            let mut s = std::net::TcpStream::connect(address).ok()?;
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).ok()?;
            s.write_all(body.as_bytes()).ok()?;
            let mut first = [0u8; 64];
            let _ = s.read(&mut first);
            return Some(Outcome { kind: "hang-up", status: 0, took: start.elapsed() });
        }
        8 => ("malformed", "/v1/chat/completions", "{\"model\": \"tiny\", \"messages\": [".into(), false),
        9 => {
            let limits = [
                json!({"model": "tiny", "prompt": "word ".repeat(400), "max_tokens": 4}),
                json!({"model": "tiny", "prompt": "Hi", "n": 17}),
                json!({"model": "tiny", "prompt": "Hi", "stop": (0..17).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
                json!({"model": "tiny", "prompt": "Hi", "logit_bias": (0..301).map(|i| (i.to_string(), json!(1))).collect::<serde_json::Map<String, Value>>()}),
                json!({"model": "tiny", "prompt": "Hi", "max_tokens": 1_000_000_000u64}),
                json!({"model": "tiny", "prompt": "x".repeat(1_100_000)}),
            ];
            let body = limits[(pick / 12 % limits.len() as u64) as usize].to_string();
            ("at a limit", "/v1/completions", body, false)
        }
        _ => ("chat", "/v1/chat/completions", chat(4, false).to_string(), false),
    };
    let start = Instant::now();
    let (status, text) = send(url, path, &body).unwrap_or_else(|e| panic!("{kind}: no answer: {e}"));
    check(kind, status, &text, streamed && status == 200);
    Some(Outcome { kind, status, took: start.elapsed() })
}

fn metric(url: &str, name: &str) -> f64 {
    let (_, text) = send_get(url, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("/metrics has no {name}"))
}

fn send_get(url: &str, path: &str) -> (u16, String) {
    let mut resp = agent().get(&format!("{url}{path}")).call().unwrap();
    let mut text = String::new();
    resp.body_mut().as_reader().read_to_string(&mut text).unwrap();
    (resp.status().as_u16(), text)
}

/// `CLIENTS` clients sending requests for `length`.
fn phase(url: &str, address: &str, length: Duration) -> Vec<Outcome> {
    let deadline = Instant::now() + length;
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                scope.spawn(move || {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(c as u64 + 1)
                        ^ deadline.elapsed().as_nanos() as u64;
                    let mut done = Vec::new();
                    while Instant::now() < deadline {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        done.extend(one_request(url, address, x));
                    }
                    done
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn the_server_answers_every_request_under_load_and_abuse() {
    let seconds = std::env::var("MINILLM_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let server = serve(&["--max-concurrent", "4"]);
    let url = server.url.clone();
    let address = url.trim_start_matches("http://").to_string();
    // Warm up (first allocations, the tokenizer's caches), then take the memory baseline.
    for i in 0..20 {
        one_request(&url, &address, i % 7);
    }
    // The first half settles the server at its working size (buffers for 24 connections, a 1 MB
    // body each, the engine's batch); the second must not grow it: a leak grows with requests.
    let mut outcomes = phase(&url, &address, Duration::from_secs(seconds / 2));
    let rss_start = rss_kb(server.pid());
    outcomes.extend(phase(&url, &address, Duration::from_secs(seconds - seconds / 2)));
    // Every slot comes back: hung-up streams included.
    let settle = Instant::now() + Duration::from_secs(10);
    while metric(&url, "minillm_requests_running") + metric(&url, "minillm_requests_waiting") > 0.0 {
        assert!(Instant::now() < settle, "slots still taken 10 s after the last request");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_end = rss_kb(server.pid());

    let mut by_status: BTreeMap<(u16, &str), usize> = BTreeMap::new();
    for o in &outcomes {
        *by_status.entry((o.status, o.kind)).or_default() += 1;
    }
    let mut answered: Vec<Duration> = outcomes.iter().filter(|o| o.status == 200).map(|o| o.took).collect();
    answered.sort();
    assert!(answered.len() > 50, "too few answers to judge: {by_status:?}");
    assert!(
        by_status.keys().any(|(s, _)| *s == 429),
        "24 clients on 4 slots were never told to wait: {by_status:?}"
    );
    let growth = rss_end as f64 / rss_start.max(1) as f64 - 1.0;
    eprintln!(
        "soak: {} requests in {seconds} s from {CLIENTS} clients on 4 slots; by status and kind: {by_status:?}; \
         200s: p50 {:.0} ms, p99 {:.0} ms; memory over the second half {rss_start} kB -> {rss_end} kB ({:+.1}%)",
        outcomes.len(),
        percentile(&answered, 0.5).as_secs_f64() * 1e3,
        percentile(&answered, 0.99).as_secs_f64() * 1e3,
        100.0 * growth
    );
    // A leak grows with the requests; allocator noise does not reach this.
    assert!(growth < 0.10, "memory grew {:.0}% over the second half of the run", 100.0 * growth);
}

/// A client that trickles its headers, or stops sending its body, is cut off after
/// `--read-timeout` instead of holding a connection (and, for a body, told why).
#[test]
fn slow_clients_are_cut_off() {
    let server = serve(&["--read-timeout", "1"]);
    let address = server.url.trim_start_matches("http://").to_string();
    let stalled = |request: &[u8]| {
        let mut s = std::net::TcpStream::connect(&address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        let start = Instant::now();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        (start.elapsed(), String::from_utf8_lossy(&answer).into_owned())
    };
    let (took, answer) = stalled(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
    assert!(took < Duration::from_secs(10) && answer.is_empty(), "headers: {took:?} {answer}");
    let (took, answer) = stalled(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
    );
    assert!(took < Duration::from_secs(10), "body: {took:?}");
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("the body did not arrive in time"),
        "{answer}"
    );
    // The server still answers everyone else.
    let (status, _) = send(
        &server.url,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "Hi", "max_tokens": 2}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200);
}
