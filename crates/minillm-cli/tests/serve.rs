//! `minillm serve` on a free loopback port: every endpoint, the streaming formats, every error
//! case, concurrent streams, and the real `openai` and `anthropic` Python clients.

mod common;

use common::{agent, events, post, post_json, random_model, serve};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ask(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

#[test]
fn endpoints_answer_in_each_apis_format() {
    let s = serve(&[]);
    let mut resp = agent().get(&format!("{}/v1/models", s.url)).call().unwrap();
    let models: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(agent().get(&format!("{}/health", s.url)).call().unwrap().status().as_u16(), 200);

    // Chat: usage, finish reason, logprobs with alternatives, n choices decoded together.
    let body = json!({"model": "tiny", "messages": ask("Hello"), "max_tokens": 5, "temperature": 0,
        "logprobs": true, "top_logprobs": 3, "n": 2});
    let (status, r) = post_json(&s.url, "/v1/chat/completions", body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["choices"][0]["message"]["content"], r["choices"][1]["message"]["content"],
        "greedy choices agree"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 10);
    assert_eq!(r["usage"]["total_tokens"].as_u64(), Some(r["usage"]["prompt_tokens"].as_u64().unwrap() + 10));
    let lp = &r["choices"][0]["logprobs"]["content"];
    assert_eq!(lp.as_array().unwrap().len(), 5);
    assert_eq!(lp[0]["top_logprobs"].as_array().unwrap().len(), 3);
    assert_eq!(lp[0]["top_logprobs"][0]["logprob"], lp[0]["logprob"], "greedy picks the most likely");

    // Streaming chat: role first, pieces that add up to the non-streamed text, the finish
    // reason, usage on request, then [DONE].
    let plain = json!({"model": "tiny", "messages": ask("Hello"), "max_tokens": 6, "temperature": 0});
    let (_, whole) = post_json(&s.url, "/v1/chat/completions", plain.clone());
    let mut streamed = plain.clone();
    streamed["stream"] = true.into();
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, text) = post(&s.url, "/v1/chat/completions", &streamed.to_string(), &[]);
    assert_eq!(status, 200);
    let data = events(&text);
    assert_eq!(data.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, whole["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);

    // Completions, and a stop string that is cut from the text.
    let (_, c) = post_json(
        &s.url,
        "/v1/completions",
        json!({"model": "tiny", "prompt": "It was the", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(c["object"], "text_completion");
    let text = c["choices"][0]["text"].as_str().unwrap().to_string();
    let stop: String = text.chars().skip(2).take(2).collect();
    if !stop.trim().is_empty() {
        let (_, cut) = post_json(
            &s.url,
            "/v1/completions",
            json!({"model": "tiny", "prompt": "It was the", "max_tokens": 8, "temperature": 0, "stop": [stop]}),
        );
        assert_eq!(cut["choices"][0]["text"].as_str().unwrap(), &text[..text.find(&stop).unwrap()]);
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    }

    // Anthropic messages, plain and streamed with its event sequence.
    let m = json!({"model": "tiny", "max_tokens": 5, "system": "Be brief.", "messages": ask("Hello"), "temperature": 0});
    let (status, r) = post_json(&s.url, "/v1/messages", m.clone());
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["type"].as_str(), r["role"].as_str(), r["stop_reason"].as_str()),
        (Some("message"), Some("assistant"), Some("max_tokens"))
    );
    assert_eq!(r["usage"]["output_tokens"], 5);
    let mut ms = m.clone();
    ms["stream"] = true.into();
    let (_, text) = post(&s.url, "/v1/messages", &ms.to_string(), &[]);
    let names: Vec<String> = events(&text).into_iter().map(|(n, _)| n.unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start"];
    let deltas = names.iter().filter(|n| *n == "content_block_delta").count();
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let joined: String = events(&text)
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(joined, r["content"][0]["text"].as_str().unwrap());
}

#[test]
fn bad_requests_get_each_apis_error_shape_and_status() {
    let s = serve(&["--api-key", "secret"]);
    let key = [("authorization", "Bearer secret")];
    let openai_error = |status: u16, text: &str| -> (u16, Value) {
        let v: Value = serde_json::from_str(text).unwrap();
        assert!(v["error"]["message"].is_string(), "{v}");
        (status, v)
    };
    // Missing or wrong key: 401 in both shapes.
    let (status, text) = post(
        &s.url,
        "/v1/chat/completions",
        &json!({"model": "tiny", "messages": ask("hi")}).to_string(),
        &[],
    );
    assert_eq!(openai_error(status, &text).0, 401);
    let (status, text) = post(&s.url, "/v1/messages", "{}", &[("x-api-key", "wrong")]);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, v["type"].as_str(), v["error"]["type"].as_str()),
        (401, Some("error"), Some("authentication_error"))
    );
    // Malformed JSON, wrong field types (named), unknown model, overlong prompt.
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{not json".into(), 400, None),
        (json!({"model": "tiny", "messages": "hi"}).to_string(), 400, Some("messages")),
        (
            json!({"model": "tiny", "messages": ask("hi"), "temperature": "hot"}).to_string(),
            400,
            Some("temperature"),
        ),
        (
            json!({"model": "tiny", "messages": ask("hi"), "max_tokens": -1}).to_string(),
            400,
            Some("max_tokens"),
        ),
        (json!({"model": "tiny", "messages": ask("hi"), "stop": 5}).to_string(), 400, Some("stop")),
        (json!({"model": "gpt-4", "messages": ask("hi")}).to_string(), 404, Some("model")),
        (json!({"model": "tiny", "messages": ask(&"word ".repeat(400))}).to_string(), 400, Some("messages")),
    ];
    for (body, want, param) in cases {
        let (status, text) = post(&s.url, "/v1/chat/completions", &body, &key);
        let (status, v) = openai_error(status, &text);
        assert_eq!(status, want, "{body}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{body}: {v}");
    }
    let (status, text) = post(
        &s.url,
        "/v1/chat/completions",
        &json!({"model": "tiny", "messages": ask(&"word ".repeat(400))}).to_string(),
        &key,
    );
    assert!(status == 400 && text.contains("context holds 64"), "{text}");
    // Anthropic requires max_tokens; a body over the size limit is refused.
    let (status, text) =
        post(&s.url, "/v1/messages", &json!({"model": "tiny", "messages": ask("hi")}).to_string(), &key);
    assert!(status == 400 && text.contains("'max_tokens' is required"), "{text}");
    // Over the size limit: 413, or the connection closed before the whole body was sent.
    let huge = json!({"model": "tiny", "prompt": "x".repeat(2 << 20)}).to_string();
    match agent()
        .post(&format!("{}/v1/completions", s.url))
        .header("authorization", "Bearer secret")
        .send(&huge)
    {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 413),
        Err(e) => assert!(matches!(e, ureq::Error::Io(_)), "{e}"),
    }
    // max_tokens beyond the context is capped, not an error.
    let (status, text) = post(
        &s.url,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "It", "max_tokens": 100000, "temperature": 0}).to_string(),
        &key,
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(status == 200 && v["usage"]["total_tokens"].as_u64().unwrap() <= 64, "{v}");
}

#[test]
fn thirty_two_concurrent_streams_all_complete() {
    let s = serve(&["--max-concurrent", "16"]);
    let url = s.url.clone();
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"model": "tiny", "messages": ask(&format!("Request {i}")), "max_tokens": 12,
                    "temperature": 0.8, "seed": i, "stream": true});
                let (status, text) = post(&url, "/v1/chat/completions", &body.to_string(), &[]);
                (status, text)
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for h in handles {
        let (status, text) = h.join().unwrap();
        match status {
            200 => {
                let data = events(&text);
                assert_eq!(data.last().unwrap().1, "[DONE]", "{text}");
                let finish: Vec<Value> =
                    data[..data.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
                assert!(finish.iter().any(|c| c["choices"][0]["finish_reason"].is_string()), "{text}");
                ok += 1;
            }
            429 => busy += 1,
            other => panic!("status {other}: {text}"),
        }
    }
    // 16 decode together and 16 may wait: none is refused or lost.
    assert_eq!((ok, busy), (32, 0));
}

/// The seed's example calls through the real client libraries.
#[test]
fn the_real_openai_and_anthropic_clients_work() {
    let python = client_python();
    let s = serve(&[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients.py");
    let out = Command::new(&python).arg(&script).arg(&s.url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "openai chat ok",
        "openai stream ok",
        "openai completions ok",
        "openai echo logprobs ok",
        "openai seeds ok",
        "anthropic ok",
        "anthropic prefill ok",
        "anthropic stream ok",
        "errors ok",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
}

/// The guide's Python snippets (docs/guide/07-serving.md), as printed, against a live server.
#[test]
fn the_guides_client_snippets_run() {
    let python = client_python();
    // A context long enough for the tools' descriptions (the fixture's holds 64 tokens).
    let s = serve_long("guide-snippets", "talker-dpo");
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide/07-serving.md"),
    )
    .unwrap();
    let blocks: Vec<&str> =
        guide.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert_eq!(
        blocks.len(),
        4,
        "the chapter shows three OpenAI snippets (chat, JSON, tools) and an Anthropic one"
    );
    for block in blocks {
        assert!(block.contains("http://127.0.0.1:8080"));
        let code = block.replace("http://127.0.0.1:8080", &s.url);
        let out = Command::new(&python).args(["-c", &code]).output().unwrap();
        assert!(out.status.success(), "{code}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty());
    }
}

/// A Python with the `openai`, `anthropic`, `langchain-openai` and `jsonschema` packages:
/// $MINILLM_PYTHON (.ci/run sets it), or a
/// virtual environment made under target/ on first use. Fails loudly when neither works.
fn client_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MINILLM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("client-venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        let imports = "import openai, anthropic, langchain_openai, jsonschema";
        Command::new(p).args(["-c", imports]).output().is_ok_and(|o| o.status.success())
    };
    if !has(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        let installed = made.is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "openai", "anthropic", "langchain-openai", "jsonschema"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            installed && has(&python),
            "\n\n!!! The real-client tests need Python 3 with the `openai`, `anthropic`, `langchain-openai` and `jsonschema` packages and could not install them into {}.\n!!! Set MINILLM_PYTHON to a Python that has them (bash .ci/run does).\n",
            venv.display()
        );
    }
    python
}

/// A request still generating at the deadline: a plain one gets 504, a stream ends as if its
/// budget ran out, and either way the slot is free again. The model has a context far longer than
/// the deadline lets it fill.
#[test]
fn requests_are_cut_off_at_the_timeout_and_free_their_slot() {
    let dir = random_model("serve-timeout", 60_000);
    let args = ["serve", "--model", &dir.to_string_lossy(), "--port", "0", "--model-name", "long"];
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string())
        .chain(["--timeout", "0.3", "--max-concurrent", "1"].map(String::from))
        .collect();
    let s = common::start(&args);
    let body = json!({"model": "long", "prompt": "Once", "temperature": 0});
    let started = std::time::Instant::now();
    let (status, r) = post_json(&s.url, "/v1/completions", body.clone());
    assert_eq!(status, 504, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("timeout"), "{r}");
    assert!(started.elapsed().as_secs_f64() >= 0.3);
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let (status, text) = post(&s.url, "/v1/completions", &streamed.to_string(), &[]);
    assert_eq!(status, 200);
    let data = events(&text);
    assert_eq!(data.last().unwrap().1, "[DONE]");
    let last: Value = serde_json::from_str(&data[data.len() - 2].1).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // One slot, and it is free: a short request goes through. Greedy, since a sampled token could
    // be the end of text (the model is random) and end the reply early.
    let short = json!({"model": "long", "prompt": "Once", "max_tokens": 3, "temperature": 0});
    let (status, r) = post_json(&s.url, "/v1/completions", short);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// lm-evaluation-harness's request: the prompt echoed with each token's log-probability given
/// the tokens before it, scored without generating.
#[test]
fn completions_echo_scores_the_prompt_and_take_every_prompt_form() {
    let s = serve(&[]);
    let text = "It was the best of times";
    let body = json!({"model": "tiny", "prompt": text, "max_tokens": 0, "echo": true, "logprobs": 2, "temperature": 0});
    let (status, r) = post_json(&s.url, "/v1/completions", body);
    assert_eq!(status, 200, "{r}");
    let choice = &r["choices"][0];
    assert_eq!(choice["text"], text, "echo returns the prompt");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 0);
    let lp = &choice["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), r["usage"]["prompt_tokens"].as_u64().unwrap() as usize);
    assert!(
        lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null(),
        "nothing predicts the first token"
    );
    // Each log-probability is the surprisal `inspect` reports for that token.
    let inspected =
        common::cli(&["inspect", "--model", &common::fixture().to_string_lossy(), "--json", text]);
    for i in 1..tokens.len() {
        let ours = lp["token_logprobs"][i].as_f64().unwrap();
        let bits = inspected["surprisal"][i].as_f64().unwrap();
        assert!((ours + bits * std::f64::consts::LN_2).abs() < 1e-4, "token {i}: {ours} vs {bits} bits");
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 2);
        assert!(top.values().all(|v| v.as_f64().unwrap() >= ours - 1e-6 || top.len() == 2));
    }
    assert_eq!(lp["text_offset"][1], tokens[0].as_str().unwrap().len());

    // With generation: the echoed prompt, then the continuation, log-probabilities of both.
    let body = json!({"model": "tiny", "prompt": text, "max_tokens": 3, "echo": true, "logprobs": 0, "temperature": 0});
    let (_, r) = post_json(&s.url, "/v1/completions", body);
    let plain = json!({"model": "tiny", "prompt": text, "max_tokens": 3, "temperature": 0});
    let (_, p) = post_json(&s.url, "/v1/completions", plain);
    let continuation = p["choices"][0]["text"].as_str().unwrap();
    assert_eq!(r["choices"][0]["text"].as_str().unwrap(), format!("{text}{continuation}"));
    assert_eq!(r["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), tokens.len() + 3);

    // A list of strings, token ids, and lists of token ids: one choice per prompt, in order,
    // each what the prompt alone gets.
    let ids: Vec<u64> =
        inspected["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let alone = |prompt: Value| {
        let (status, r) = post_json(
            &s.url,
            "/v1/completions",
            json!({"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0}),
        );
        assert_eq!(status, 200, "{r}");
        r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (a, b) = (alone(json!(text)), alone(json!("Once upon")));
    assert_eq!(alone(json!([text, "Once upon"])), [a[0].clone(), b[0].clone()]);
    assert_eq!(alone(json!(ids)), a);
    assert_eq!(alone(json!([ids, ids])), [a[0].clone(), a[0].clone()]);
    let (status, r) = post_json(
        &s.url,
        "/v1/completions",
        json!({"model": "tiny", "prompt": [text], "max_tokens": 2, "n": 2}),
    );
    assert_eq!(status, 200);
    let indexes: Vec<u64> =
        r["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1]);
}

#[test]
fn no_seed_means_fresh_randomness_and_a_seed_reproduces() {
    let s = serve(&[]);
    let ask = |seed: Option<u64>| {
        let mut body = json!({"model": "tiny", "prompt": "It was", "max_tokens": 24, "temperature": 1.5});
        if let Some(seed) = seed {
            body["seed"] = seed.into();
        }
        let mut resp = agent()
            .post(&format!("{}/v1/completions", s.url))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let seed: u64 = resp.headers().get("x-minillm-seed").unwrap().to_str().unwrap().parse().unwrap();
        let r: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (r["choices"][0]["text"].as_str().unwrap().to_string(), seed)
    };
    let (a, seed_a) = ask(None);
    let (b, seed_b) = ask(None);
    assert!(a != b && seed_a != seed_b, "two unseeded requests gave {a:?} twice");
    assert_eq!(ask(Some(seed_a)).0, a, "the reported seed reproduces the reply");
    assert_eq!(ask(Some(7)), ask(Some(7)));
}

#[test]
fn fields_the_server_cannot_honour_are_refused_by_name() {
    let s = serve(&[]);
    let chat = |extra: Value| {
        let mut body = json!({"model": "tiny", "messages": ask("Hi"), "max_tokens": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        post_json(&s.url, "/v1/chat/completions", body)
    };
    for (field, value) in
        [("functions", json!([{"name": "f", "parameters": {}}])), ("function_call", json!("auto"))]
    {
        let (status, r) = chat(json!({ field: value }));
        assert_eq!(status, 400, "{field}: {r}");
        assert_eq!(r["error"]["param"], field);
        assert!(r["error"]["message"].as_str().unwrap().contains("are not implemented"), "{r}");
    }
    // A field no endpoint knows (a typo, or a newer API's) is refused by name, never ignored.
    for (path, body) in [
        ("/v1/chat/completions", json!({"model": "tiny", "messages": ask("Hi"), "temprature": 0})),
        ("/v1/completions", json!({"model": "tiny", "prompt": "Hi", "temprature": 0})),
        ("/v1/messages", json!({"model": "tiny", "max_tokens": 2, "messages": ask("Hi"), "temprature": 0})),
        ("/v1/messages/count_tokens", json!({"model": "tiny", "messages": ask("Hi"), "temprature": 0})),
    ] {
        let (status, r) = post_json(&s.url, path, body);
        assert_eq!(status, 400, "{path}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("'temprature' is not a field"), "{r}");
    }
    for (options, field) in [
        (json!({"include_usage": true, "continuous_usage_stats": true}), "continuous_usage_stats"),
        (json!({"include_usage": "yes"}), "include_usage"),
        (json!(true), "stream_options"),
    ] {
        let (status, r) = chat(json!({"stream": true, "stream_options": options}));
        assert_eq!((status, r["error"]["param"].as_str()), (400, Some(field)), "{r}");
    }
    let (status, r) = chat(json!({"echo": true}));
    assert_eq!((status, r["error"]["param"].as_str()), (400, Some("echo")), "echo is the completions API's");
    let (status, r) = chat(json!({"top_logprobs": 21, "logprobs": true}));
    assert_eq!((status, r["error"]["param"].as_str()), (400, Some("top_logprobs")));
    let (status, r) = chat(json!({"max_tokens": 0}));
    assert_eq!((status, r["error"]["param"].as_str()), (400, Some("max_tokens")));
    let odd_turn =
        json!({"model": "tiny", "max_tokens": 2, "messages": [{"role": "function", "content": "42"}]});
    let (status, r) = post_json(&s.url, "/v1/chat/completions", odd_turn);
    assert_eq!(status, 400);
    assert!(r["error"]["message"].as_str().unwrap().starts_with("role 'function' is not supported"), "{r}");
    let completion = |extra: Value| {
        let mut body = json!({"model": "tiny", "prompt": "It was", "max_tokens": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        post_json(&s.url, "/v1/completions", body)
    };
    for (field, value) in
        [("suffix", json!("end")), ("best_of", json!(3)), ("logit_bias", json!({"999999": 5}))]
    {
        let (status, r) = completion(json!({ field: value }));
        assert_eq!((status, r["error"]["param"].as_str()), (400, Some(field)), "{r}");
    }
    let (status, r) = completion(json!({"prompt": [1, 2, 9999999]}));
    assert_eq!(status, 400);
    assert!(r["error"]["message"].as_str().unwrap().contains("past the vocabulary"), "{r}");
    // logit_bias is applied: +100 on one token makes greedy decoding pick it every time.
    let (status, r) =
        completion(json!({"temperature": 0, "logit_bias": {"400": 100}, "max_tokens": 3, "logprobs": 0}));
    assert_eq!(status, 200, "{r}");
    assert!(r["choices"][0]["logprobs"]["tokens"].as_array().unwrap().iter().all(|t| t == "It"), "{r}");
    // Anthropic: extended thinking is refused, in its error shape.
    let m = json!({"model": "tiny", "max_tokens": 2, "thinking": {"type": "enabled"}, "messages": ask("Hi")});
    let (status, r) = post_json(&s.url, "/v1/messages", m);
    assert_eq!((status, r["type"].as_str()), (400, Some("error")), "{r}");
}

#[test]
fn every_endpoint_and_every_error_answers_in_json() {
    let s = serve(&[]);
    let get = |path: &str| {
        let mut resp = agent().get(&format!("{}{path}", s.url)).call().unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_str::<Value>(&resp.body_mut().read_to_string().unwrap()).unwrap())
    };
    let (status, m) = get("/v1/models/tiny");
    assert_eq!((status, m["id"].as_str(), m["object"].as_str()), (200, Some("tiny"), Some("model")));
    let (status, m) = get("/v1/models/gpt-4");
    assert_eq!((status, m["error"]["param"].as_str()), (404, Some("model")), "{m}");
    let (status, e) = get("/v1/embeddings");
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains("/v1/embeddings is not offered"), "{e}");
    let (status, e) = get("/v1/engines");
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains("/v1/engines is not an endpoint"), "{e}");
    // A wrong method: 405 in the API's shape (Anthropic's under /v1/messages).
    let (status, e) = get("/v1/messages");
    assert_eq!((status, e["type"].as_str()), (405, Some("error")), "{e}");
    // A body that is not declared JSON: 415.
    let mut resp = agent()
        .post(&format!("{}/v1/chat/completions", s.url))
        .header("content-type", "text/plain")
        .send(json!({"model": "tiny", "messages": ask("Hi")}).to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let e: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("application/json"), "{e}");

    // Anthropic's token count is what a reply's usage says the prompt took.
    let m = json!({"model": "tiny", "messages": ask("Hello there")});
    let (status, counted) = post_json(&s.url, "/v1/messages/count_tokens", m.clone());
    assert_eq!(status, 200, "{counted}");
    let mut m = m;
    m["max_tokens"] = json!(1);
    let (_, reply) = post_json(&s.url, "/v1/messages", m);
    assert_eq!(counted["input_tokens"], reply["usage"]["input_tokens"]);

    // llama.cpp's /tokenize and /detokenize: the ids `inspect` shows, and back.
    let (status, t) = post_json(&s.url, "/tokenize", json!({"content": "It was the best"}));
    assert_eq!(status, 200, "{t}");
    let inspected = common::cli(&[
        "inspect",
        "--model",
        &common::fixture().to_string_lossy(),
        "--json",
        "It was the best",
    ]);
    let ids: Vec<Value> = inspected["tokens"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect();
    assert_eq!(t["tokens"].as_array().unwrap(), &ids);
    let (_, d) = post_json(&s.url, "/detokenize", json!({"tokens": ids}));
    assert_eq!(d["content"], "It was the best");
    let (status, e) = post_json(&s.url, "/detokenize", json!({"tokens": ["x"]}));
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("tokens")));

    // vLLM's forms, which lm-eval's remote tokenizer uses: `prompt` reads special-token text as
    // the token (as HF tokenizers do), `content` keeps it as text.
    let (status, v) =
        post_json(&s.url, "/tokenize", json!({"prompt": "It was the best", "add_special_tokens": false}));
    assert_eq!(status, 200, "{v}");
    assert_eq!((&v["tokens"], v["count"].as_u64()), (&t["tokens"], Some(ids.len() as u64)));
    assert_eq!(v["max_model_len"], 64);
    let (_, special) = post_json(&s.url, "/tokenize", json!({"prompt": "<|endoftext|>"}));
    assert_eq!(special["tokens"], json!([0]));
    let (_, as_text) = post_json(&s.url, "/tokenize", json!({"content": "<|endoftext|>"}));
    assert!(as_text["tokens"].as_array().unwrap().len() > 1, "{as_text}");
    assert_eq!(d["prompt"], "It was the best");
    let mut info = common::agent().get(&format!("{}/tokenizer_info", s.url)).call().unwrap();
    let info: Value = serde_json::from_str(&info.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!((&info["eos_token"], info["model_max_length"].as_u64()), (&json!("<|endoftext|>"), Some(64)));
    for (body, field) in [
        (json!({"content": "a", "with_pieces": true}), "with_pieces"),
        (json!({"content": "a", "prompt": "b"}), "prompt"),
        (json!({"prompt": "a", "model": "other"}), "model"),
    ] {
        let (status, e) = post_json(&s.url, "/tokenize", body);
        assert_eq!((status, e["error"]["param"].as_str()), (400, Some(field)), "{e}");
    }
}

/// Anthropic's prefill: a last assistant message is continued, and the reply holds only what
/// follows it: the continuation a plain completion of the same rendered text gives.
#[test]
fn a_last_assistant_message_is_continued() {
    let s = serve(&[]);
    let messages = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "It was the"}]);
    let m = json!({"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": messages});
    let (status, r) = post_json(&s.url, "/v1/messages", m);
    assert_eq!(status, 200, "{r}");
    // The fixture model has no chat template: conversations are plain lines, so the prompt is
    // this text and a completion of it must continue identically.
    let (_, c) = post_json(
        &s.url,
        "/v1/completions",
        json!({"model": "tiny", "max_tokens": 6, "temperature": 0, "prompt": "User: Hi\nAssistant: It was the"}),
    );
    assert_eq!(r["content"][0]["text"], c["choices"][0]["text"], "{r} {c}");
    assert_eq!(r["usage"]["input_tokens"], c["usage"]["prompt_tokens"]);
    let trailing = json!({"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well "}]});
    let (status, r) = post_json(&s.url, "/v1/messages", trailing);
    assert_eq!(status, 400);
    assert!(r["error"]["message"].as_str().unwrap().contains("trailing whitespace"), "{r}");
}

/// `n` choices streamed together: chunks interleave, each names its index, and each index's
/// pieces add up to that choice of the same request not streamed.
#[test]
fn several_choices_stream_interleaved_by_index() {
    let s = serve(&[]);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": ask("Hello"), "max_tokens": 6, "n": 3, "seed": 5}),
        ),
        ("/v1/completions", json!({"model": "tiny", "prompt": "It was", "max_tokens": 6, "n": 3, "seed": 5})),
    ] {
        let (status, whole) = post_json(&s.url, path, body.clone());
        assert_eq!(status, 200, "{whole}");
        let mut streamed = body.clone();
        streamed["stream"] = true.into();
        streamed["stream_options"] = json!({"include_usage": true});
        let (status, text) = post(&s.url, path, &streamed.to_string(), &[]);
        assert_eq!(status, 200, "{text}");
        let data = events(&text);
        assert_eq!(data.last().unwrap().1, "[DONE]");
        let chunks: Vec<Value> =
            data[..data.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
        let usage = chunks.last().unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], whole["usage"]["completion_tokens"], "{path}");
        for i in 0..3 {
            let mine: Vec<&Value> =
                chunks.iter().map(|c| &c["choices"][0]).filter(|c| c["index"] == i).collect();
            let joined: String =
                mine.iter().filter_map(|c| c["delta"]["content"].as_str().or(c["text"].as_str())).collect();
            let want = &whole["choices"][i];
            let want = want["message"]["content"].as_str().or(want["text"].as_str()).unwrap();
            assert_eq!(joined, want, "{path} choice {i}");
            let finishes = mine.iter().filter(|c| !c["finish_reason"].is_null()).count();
            assert_eq!(finishes, 1, "{path} choice {i}: one finish chunk");
        }
    }
}

/// A streamed completion's logprobs come in the completions API's shape (tokens, token
/// logprobs, top alternatives, offsets), chunk by chunk adding up to the unstreamed ones.
#[test]
fn streamed_completions_carry_completion_shaped_logprobs() {
    let s = serve(&[]);
    let body = json!({"model": "tiny", "prompt": "It was", "max_tokens": 6, "temperature": 0, "logprobs": 2});
    let (_, whole) = post_json(&s.url, "/v1/completions", body.clone());
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let (status, text) = post(&s.url, "/v1/completions", &streamed.to_string(), &[]);
    assert_eq!(status, 200, "{text}");
    let data = events(&text);
    let (mut tokens, mut logprobs, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for (_, d) in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(d).unwrap();
        let lp = &chunk["choices"][0]["logprobs"];
        if lp.is_null() {
            continue;
        }
        assert!(lp.get("content").is_none(), "chat-shaped logprobs in a completion: {lp}");
        tokens.extend(lp["tokens"].as_array().unwrap().clone());
        logprobs.extend(lp["token_logprobs"].as_array().unwrap().clone());
        tops.extend(lp["top_logprobs"].as_array().unwrap().clone());
        offsets.extend(lp["text_offset"].as_array().unwrap().clone());
    }
    let want = &whole["choices"][0]["logprobs"];
    assert_eq!(Value::from(tokens), want["tokens"]);
    assert_eq!(Value::from(logprobs), want["token_logprobs"]);
    assert_eq!(Value::from(tops), want["top_logprobs"]);
    assert_eq!(Value::from(offsets), want["text_offset"]);
}

/// `response_format`: every choice of a random-weight model, streamed or not, is JSON valid
/// under the schema (constrained decoding); what cannot be used is refused naming the field.
#[test]
fn response_format_makes_every_reply_valid_json() {
    let s = serve(&[]);
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let format =
        json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}});
    let check = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(v["name"].as_str().unwrap().chars().count() <= 8, "{text}");
        assert!((0..=99).contains(&v["age"].as_i64().unwrap()), "{text}");
    };
    let body = json!({"model": "tiny", "messages": ask("Who?"), "max_tokens": 40, "n": 4, "temperature": 1.0,
        "response_format": format, "logprobs": true, "top_logprobs": 3});
    let (status, r) = post_json(&s.url, "/v1/chat/completions", body.clone());
    assert_eq!(status, 200, "{r}");
    for choice in r["choices"].as_array().unwrap() {
        assert_eq!(choice["finish_reason"], "stop", "{choice}");
        check(choice["message"]["content"].as_str().unwrap());
        // Log-probabilities are the model's own, finite, with the alternatives it preferred.
        let first = &choice["logprobs"]["content"][0];
        assert!(
            first["logprob"].as_f64().unwrap().is_finite()
                && first["top_logprobs"].as_array().unwrap().len() == 3
        );
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["n"] = json!(1);
    let (status, text) = post(&s.url, "/v1/chat/completions", &streamed.to_string(), &[]);
    assert_eq!(status, 200);
    let content: String = events(&text)
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    check(&content);
    let (status, c) = post_json(
        &s.url,
        "/v1/completions",
        json!({"model": "tiny", "prompt": "It was", "max_tokens": 40, "response_format": format}),
    );
    assert_eq!(status, 200, "{c}");
    check(c["choices"][0]["text"].as_str().unwrap());
    for (format, says) in [
        (json!({"type": "yaml"}), "must be text, json_object or json_schema"),
        (json!({"type": "json_schema", "json_schema": {"name": "x"}}), "must be a JSON schema"),
        (json!({"type": "json_schema", "json_schema": {"schema": {"$ref": "#/nowhere"}}}), "cannot be used"),
    ] {
        let body =
            json!({"model": "tiny", "messages": ask("Hi"), "max_tokens": 5, "response_format": format});
        let (status, r) = post_json(&s.url, "/v1/chat/completions", body);
        assert_eq!((status, r["error"]["param"].as_str()), (400, Some("response_format")), "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(says), "{r}");
    }
}

/// `minillm serve` on a [`random_model`] with a context of 2,048 tokens, named `model_name`.
fn serve_long(dir_name: &str, model_name: &str) -> common::Server {
    let model = random_model(dir_name, 2048);
    common::start(
        &["serve", "--model", &model.to_string_lossy(), "--port", "0", "--model-name", model_name]
            .map(String::from),
    )
}

/// OpenAI's tool calls: a required (or named) call is a well-formed call with valid arguments
/// in every choice, streamed or not; a conversation can carry earlier calls and their results;
/// what is malformed is refused naming the field.
#[test]
fn tool_calls_come_back_in_openais_shape() {
    let s = serve_long("serve-tools", "long");
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"enum": ["Lima", "Rome"]}}, "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "add",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"], "additionalProperties": false}}}
    ]);
    let ask_weather = json!([{"role": "user", "content": "Weather in Lima?"}]);
    let request = |extra: Value| {
        let mut body = json!({"model": "long", "messages": ask_weather, "tools": tools, "max_tokens": 80, "temperature": 1.0});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let check_call = |call: &Value, name: Option<&str>| {
        assert_eq!(call["type"], "function", "{call}");
        assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        match call["function"]["name"].as_str().unwrap() {
            "get_weather" => assert!(args["city"] == "Lima" || args["city"] == "Rome", "{call}"),
            "add" => assert!((0..=9).contains(&args["a"].as_i64().unwrap()), "{call}"),
            other => panic!("called {other}"),
        }
        if let Some(name) = name {
            assert_eq!(call["function"]["name"], name);
        }
    };
    let (status, r) = post_json(
        &s.url,
        "/v1/chat/completions",
        request(json!({"tool_choice": "required", "n": 3, "parallel_tool_calls": false})),
    );
    assert_eq!(status, 200, "{r}");
    for choice in r["choices"].as_array().unwrap() {
        assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
        assert!(choice["message"]["content"].is_null());
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "parallel_tool_calls false: one call");
        check_call(&calls[0], None);
    }
    // One call each: a random model calling in parallel may call until its budget runs out
    // (and a reply cut short inside a call is text, not calls).
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "add"}}, "parallel_tool_calls": false});
    let (_, r) = post_json(&s.url, "/v1/chat/completions", request(named.clone()));
    for call in r["choices"][0]["message"]["tool_calls"].as_array().unwrap() {
        check_call(call, Some("add"));
    }
    // Streamed: the calls arrive as tool_calls deltas, then the finish reason, then [DONE].
    let mut streamed = request(named);
    streamed["stream"] = json!(true);
    let (status, text) = post(&s.url, "/v1/chat/completions", &streamed.to_string(), &[]);
    assert_eq!(status, 200, "{text}");
    let chunks: Vec<Value> = events(&text)
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array()).flatten().collect();
    assert!(!calls.is_empty(), "{text}");
    for (k, call) in calls.iter().enumerate() {
        assert_eq!(call["index"], k);
        check_call(call, Some("add"));
    }
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    // With tools offered but no call required, a streamed reply's text still comes as it is
    // decoded, piece by piece.
    let mut auto = request(json!({"max_tokens": 12, "stream": true}));
    auto["temperature"] = json!(0);
    let (_, text) = post(&s.url, "/v1/chat/completions", &auto.to_string(), &[]);
    let pieces = events(&text)
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces >= 2, "{text}");
    // A conversation holding a call and its result renders and gets a reply.
    let history = json!([
        {"role": "user", "content": "Weather in Lima?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Lima\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let (status, r) =
        post_json(&s.url, "/v1/chat/completions", request(json!({"messages": history, "max_tokens": 4})));
    assert_eq!(status, 200, "{r}");
    for (extra, field, says) in [
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
            "not in 'tools'",
        ),
        (json!({"tool_choice": "sometimes"}), "tool_choice", "must be none, auto, required"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "tools",
            "letters, digits",
        ),
        (json!({"tools": [{"name": "f"}]}), "tools", "\"type\": \"function\""),
        (
            json!({"tool_choice": "required", "response_format": {"type": "json_object"}}),
            "tool_choice",
            "cannot also",
        ),
        (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages", "tool_call_id"),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "add", "arguments": "{oops"}}]}]}),
            "messages",
            "arguments",
        ),
    ] {
        let (status, r) = post_json(&s.url, "/v1/chat/completions", request(extra));
        assert_eq!((status, r["error"]["param"].as_str()), (400, Some(field)), "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(says), "{r}");
    }
}

/// Anthropic's tool use, through the real `anthropic` client: a required call (`any`) or a named
/// one comes back as a `tool_use` block with a valid input, streamed or not, and the conversation
/// goes on with the client's own blocks and a `tool_result`; malformed tools are refused by name.
#[test]
fn anthropic_tool_use_works_with_the_real_client() {
    let s = serve_long("serve-anthropic-tools", "long");
    let script = r#"
import anthropic, sys
a = anthropic.Anthropic(base_url=sys.argv[1], api_key="not-needed")
tools = [{"name": "get_weather", "description": "The weather in a city.", "input_schema": {"type": "object",
          "properties": {"city": {"enum": ["Lima", "Rome"]}}, "required": ["city"], "additionalProperties": False}}]
ask = [{"role": "user", "content": "Weather in Lima?"}]
m = a.messages.create(model="long", max_tokens=300, tools=tools, messages=ask,
                      tool_choice={"type": "any", "disable_parallel_tool_use": True})
assert m.stop_reason == "tool_use", m
(call,) = [b for b in m.content if b.type == "tool_use"]
assert call.name == "get_weather" and call.input["city"] in ("Lima", "Rome") and call.id.startswith("toolu_"), call
with a.messages.stream(model="long", max_tokens=300, tools=tools, messages=ask,
                       tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}) as stream:
    final = stream.get_final_message()
assert final.stop_reason == "tool_use", final
(call,) = [b for b in final.content if b.type == "tool_use"]
assert call.input["city"] in ("Lima", "Rome"), call
after = a.messages.create(model="long", max_tokens=4, tools=tools, messages=ask + [
    {"role": "assistant", "content": final.content},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
assert after.content[0].type == "text", after
print("anthropic tools ok")
"#;
    let out = Command::new(client_python()).args(["-c", script, &s.url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("anthropic tools ok"));
    // At the HTTP level: with tools offered, text streams piece by piece; a required call
    // follows the text block as a tool_use block whose input is one input_json_delta.
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"enum": ["Lima", "Rome"]}}, "required": ["city"], "additionalProperties": false}}]);
    let streamed = |extra: Value| {
        let mut body = json!({"model": "long", "max_tokens": 12, "temperature": 0, "stream": true, "tools": tools, "messages": [{"role": "user", "content": "Hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, text) = post(&s.url, "/v1/messages", &body.to_string(), &[]);
        assert_eq!(status, 200, "{text}");
        events(&text)
            .into_iter()
            .map(|(name, d)| (name.unwrap(), serde_json::from_str::<Value>(&d).unwrap()))
            .collect::<Vec<_>>()
    };
    let text_deltas = streamed(json!({})).iter().filter(|(_, d)| d["delta"]["type"] == "text_delta").count();
    assert!(text_deltas >= 2, "text came in {text_deltas} pieces");
    let called = streamed(
        json!({"max_tokens": 300, "tool_choice": {"type": "any", "disable_parallel_tool_use": true}}),
    );
    let names: Vec<&str> = called.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"message_stop"));
    let start =
        called.iter().find(|(_, d)| d["content_block"]["type"] == "tool_use").expect("a tool_use block");
    assert_eq!(
        (start.1["index"].as_u64(), &start.1["content_block"]["name"]),
        (Some(1), &json!("get_weather"))
    );
    let input = called.iter().find_map(|(_, d)| d["delta"]["partial_json"].as_str()).unwrap();
    let input: Value = serde_json::from_str(input).unwrap();
    assert!(input["city"] == "Lima" || input["city"] == "Rome", "{input}");
    let stop = called.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");
    let ask = json!([{"role": "user", "content": "Hi"}]);
    for (extra, field, says) in [
        (json!({"tools": [{"name": "f"}]}), "tools", "needs an 'input_schema'"),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools",
            "not offered here",
        ),
        (
            json!({"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "g"}}),
            "tool_choice",
            "must name one of",
        ),
        (json!({"tool_choice": {"type": "any"}}), "tool_choice", "'tools' is empty"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            "messages",
            "type 'image'",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            "messages",
            "tool_use_id",
        ),
    ] {
        let mut body = json!({"model": "long", "max_tokens": 5, "messages": ask});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, r) = post_json(&s.url, "/v1/messages", body);
        assert_eq!(status, 400, "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(says), "{field}: {r}");
    }
}

/// `/metrics` in Prometheus' text format: requests by path and status, tokens in and out as the
/// replies' usage counts them, and the latency histograms' counts (one first token per reply,
/// the rest between tokens).
#[test]
fn metrics_count_what_was_served() {
    let s = serve(&[]);
    let mut prompt = 0;
    let mut generated = 0;
    for max_tokens in [3, 5] {
        let body =
            json!({"model": "tiny", "messages": ask("Hi"), "max_tokens": max_tokens, "temperature": 0});
        let (status, r) = post_json(&s.url, "/v1/chat/completions", body);
        assert_eq!(status, 200, "{r}");
        prompt += r["usage"]["prompt_tokens"].as_u64().unwrap();
        generated += r["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let (status, _) = post_json(&s.url, "/v1/chat/completions", json!({"model": "tiny"}));
    assert_eq!(status, 400);
    let (status, _) = post_json(&s.url, "/v1/embeddings", json!({"model": "tiny", "input": "x"}));
    assert_eq!(status, 404);
    let mut resp = agent().get(&format!("{}/metrics", s.url)).call().unwrap();
    assert!(resp.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = resp.body_mut().read_to_string().unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        line.unwrap_or_else(|| panic!("no {name} in\n{text}")).rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value(r#"minillm_requests_total{path="/v1/chat/completions",status="200"}"#), 2.0);
    assert_eq!(value(r#"minillm_requests_total{path="/v1/chat/completions",status="400"}"#), 1.0);
    assert_eq!(value(r#"minillm_requests_total{path="/v1/embeddings",status="404"}"#), 1.0);
    assert_eq!(value("minillm_prompt_tokens_total"), prompt as f64);
    assert_eq!(value("minillm_generation_tokens_total"), generated as f64);
    assert_eq!(value("minillm_time_to_first_token_seconds_count"), 2.0);
    assert_eq!(value("minillm_time_per_output_token_seconds_count"), (generated - 2) as f64);
    assert_eq!(value(r#"minillm_time_to_first_token_seconds_bucket{le="+Inf"}"#), 2.0);
    assert!(value("minillm_time_to_first_token_seconds_sum") > 0.0);
    assert_eq!(value("minillm_requests_running"), 0.0);
    for kind in ["counter", "gauge", "histogram"] {
        assert!(text.contains(&format!(" {kind}\n")), "no {kind} in\n{text}");
    }
}

/// LangChain, the way agents are written: `ChatOpenAI.bind_tools` with a call, its result and an
/// answer; `with_structured_output` by `json_schema` and by `function_calling`, validated with
/// `jsonschema`; the `OpenAI` completions LLM's `invoke` and `batch` (which sends a list of
/// prompts). tests/langchain_clients.py holds the client code.
#[test]
fn langchain_tools_structured_output_and_batches_work() {
    let s = serve_long("serve-langchain", "long");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/langchain_clients.py");
    let out = Command::new(client_python()).arg(&script).arg(&s.url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in
        ["langchain tools ok", "(json_schema) ok", "(function_calling) ok", "langchain completions ok"]
    {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
}

/// Listening beyond loopback without a key is allowed (a lab on a trusted network) but said.
#[test]
fn serving_beyond_loopback_without_a_key_warns() {
    use std::io::BufRead;
    let model = common::fixture();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(["serve", "--model", &model.to_string_lossy(), "--host", "0.0.0.0", "--port", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("warning: listening on 0.0.0.0:") && line.contains("without --api-key"),
        "{line}"
    );
}
