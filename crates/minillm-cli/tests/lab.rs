//! The lab's pages and JSON endpoints, against the CLI they must agree with (`tokenizer encode`,
//! `inspect --json`), and every kind of bad input the page can send.

mod common;

use common::{Server, agent, cli, fixture, post, post_json, serve, start};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn get(url: &str, path: &str) -> (u16, String, String) {
    let mut resp = agent().get(&format!("{url}{path}")).call().unwrap();
    let kind = resp.headers().get("content-type").map_or("", |v| v.to_str().unwrap()).to_string();
    (resp.status().as_u16(), kind, resp.body_mut().read_to_string().unwrap())
}

fn lab(run: Option<&Path>) -> Server {
    let model = fixture().to_string_lossy().into_owned();
    let mut args = vec!["lab".to_string(), "--model".into(), model, "--port".into(), "0".into()];
    if let Some(dir) = run {
        args.extend(["--run".into(), dir.to_string_lossy().into_owned()]);
    }
    start(&args)
}

const TEXT: &str = "It was the best of times, it was the worst";

#[test]
fn the_page_its_files_and_the_model_card_are_served() {
    let s = lab(None);
    let (status, kind, page) = get(&s.url, "/");
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("<title>minillm lab</title>") && page.contains("/lab/lab.js"));
    for (path, kind) in [("/lab/lab.js", "text/javascript"), ("/lab/lab.css", "text/css")] {
        let (status, got, body) = get(&s.url, path);
        assert_eq!(status, 200, "{path}");
        assert!(got.starts_with(kind) && !body.is_empty(), "{path}: {got}");
    }
    // Every guide link on the page resolves to a chapter compiled into the binary.
    let links: Vec<&str> =
        page.split("href=\"/lab/guide/").skip(1).map(|l| l.split('"').next().unwrap()).collect();
    assert_eq!(links.len(), 5);
    for link in links {
        let (status, _, text) = get(&s.url, &format!("/lab/guide/{link}"));
        assert!(status == 200 && text.starts_with("# "), "{link}");
    }
    assert_eq!(get(&s.url, "/lab/guide/99-nothing.md").0, 404);

    let (status, _, card) = get(&s.url, "/lab/api/model");
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&card).unwrap();
    let model = minillm::io::load_model(&fixture()).unwrap();
    let params = model.params.len();
    assert_eq!(card["params"].as_u64(), Some(params as u64));
    assert_eq!(card["config"]["n_layer"], 2);
    let bytes: Vec<f64> =
        card["memory"].as_array().unwrap().iter().map(|m| m["bytes"].as_f64().unwrap()).collect();
    let want = [32.0, 16.0, 8.5, 8.0, 4.5, 4.0].map(|bits| (bits / 8.0 * params as f64).round());
    assert_eq!(bytes, want);
    assert_eq!(card["weights"], "f32");
    // What generating takes, as `model info` states it: weights as stored, KV cache, buffers.
    let (g, c) = (&card["generating"], &model.config);
    assert_eq!(g["weights"].as_u64(), Some(model.weight_bytes() as u64));
    assert_eq!(g["kv_cache"].as_u64(), Some((2 * c.n_layer * c.block_size * c.n_embd * 4) as u64));
    let parts = ["weights", "kv_cache", "working"].map(|k| g[k].as_u64().unwrap());
    assert!(parts[2] > 0 && g["total"].as_u64() == Some(parts.iter().sum()));
    assert_eq!(card["run"], Value::Null);
    let (status, _, body) = get(&s.url, "/lab/api/run");
    assert_eq!(status, 404);
    assert!(body.contains("--run"), "{body}");
}

#[test]
fn tokens_are_the_clis_and_unknown_words_are_marked() {
    let s = lab(None);
    let text = format!("{TEXT} Xyzzyq!");
    let (status, r) = post_json(&s.url, "/lab/api/tokens", json!({ "text": text }));
    assert_eq!(status, 200, "{r}");
    let tokenizers = r["tokenizers"].as_array().unwrap();
    let names: Vec<&str> = tokenizers.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["char", "word", "BPE"]);
    let ids = |t: &Value| -> Vec<u64> {
        t["tokens"].as_array().unwrap().iter().map(|x| x["id"].as_u64().unwrap()).collect()
    };
    let want = cli(&["tokenizer", "encode", "--tokenizer", &fixture().to_string_lossy(), "--json", &text]);
    let want: Vec<u64> = want["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids(&tokenizers[2]), want);
    assert_eq!(tokenizers[0]["count"].as_u64(), Some(text.chars().count() as u64));
    let words = &tokenizers[1]["tokens"];
    assert_eq!(words.as_array().unwrap().len(), 13, "{words}");
    let unknown: Vec<&str> = words
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["unknown"] == true)
        .map(|w| w["text"].as_str().unwrap())
        .collect();
    // The built-in corpus never says "Xyzzyq" (nor, being children's stories, "worst").
    assert!(unknown.contains(&"Xyzzyq") && !unknown.contains(&"was"), "{unknown:?}");
    let bpe_bytes: u64 =
        tokenizers[2]["tokens"].as_array().unwrap().iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert_eq!(bpe_bytes, text.len() as u64);
    assert_eq!(r["bytes"].as_u64(), Some(text.len() as u64));
}

#[test]
fn inspect_is_the_clis_and_the_sampler_shapes_the_bars() {
    let s = lab(None);
    let model = fixture().to_string_lossy().into_owned();
    let want =
        cli(&["inspect", "--model", &model, "--json", "--top-k", "8", "--layer", "1", "--head", "2", TEXT]);
    let (status, got) =
        post_json(&s.url, "/lab/api/inspect", json!({"text": TEXT, "top": 8, "layer": 1, "head": 2}));
    assert_eq!(status, 200, "{got}");
    for key in ["tokens", "surprisal", "attention", "residual_norms"] {
        assert_eq!(got[key], want[key], "{key}");
    }
    let ids: Vec<&Value> = got["next"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
    let want_ids: Vec<&Value> = want["next"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
    assert_eq!(ids, want_ids);
    for (n, w) in got["next"].as_array().unwrap().iter().zip(want["next"].as_array().unwrap()) {
        assert_eq!(n["prob"], w["prob"]);
        // At temperature 1 with nothing cut, the sampler draws from the model's distribution.
        assert!((n["shaped"].as_f64().unwrap() - n["prob"].as_f64().unwrap()).abs() < 1e-6, "{n}");
    }
    assert_eq!(got["kept"].as_u64(), Some(512));
    assert_eq!(got["sampled"], Value::Null);

    // The same tokens given as ids: the same answer.
    let token_ids: Vec<Value> = got["tokens"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect();
    let (_, by_ids) =
        post_json(&s.url, "/lab/api/inspect", json!({"ids": token_ids, "top": 8, "layer": 1, "head": 2}));
    assert_eq!(by_ids, got);

    // top-k 3 keeps exactly the three most likely, renormalised; temperature 0 keeps one.
    let (_, cut) = post_json(&s.url, "/lab/api/inspect", json!({"text": TEXT, "top": 8, "top_k": 3}));
    let shaped: Vec<f64> =
        cut["next"].as_array().unwrap().iter().map(|n| n["shaped"].as_f64().unwrap()).collect();
    let probs: Vec<f64> =
        cut["next"].as_array().unwrap().iter().map(|n| n["prob"].as_f64().unwrap()).collect();
    let top3: f64 = probs[..3].iter().sum();
    for k in 0..3 {
        assert!((shaped[k] - probs[k] / top3).abs() < 1e-6, "{shaped:?}");
    }
    assert!(shaped[3..].iter().all(|&p| p == 0.0));
    assert_eq!(cut["kept"], 3);
    let (_, greedy) = post_json(&s.url, "/lab/api/inspect", json!({"text": TEXT, "temperature": 0}));
    assert_eq!((greedy["kept"].as_u64(), greedy["next"][0]["shaped"].as_f64()), (Some(1), Some(1.0)));

    // A draw: the same seed gives the same token, and it is one the sampler keeps.
    let body = json!({"text": TEXT, "top": 8, "top_k": 3, "seed": 42});
    let (_, a) = post_json(&s.url, "/lab/api/inspect", body.clone());
    let (_, b) = post_json(&s.url, "/lab/api/inspect", body);
    assert_eq!(a["sampled"], b["sampled"]);
    let picked = &a["sampled"]["id"];
    assert!(a["next"].as_array().unwrap()[..3].iter().any(|n| &n["id"] == picked), "{a}");
    assert!(a["sampled"]["shaped"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_gets_a_400_the_page_can_show() {
    let s = lab(None);
    let long = "word ".repeat(100);
    for (path, body, field, says) in [
        ("/lab/api/inspect", json!({"text": long}), "text", "context holds 64"),
        ("/lab/api/inspect", json!({"text": TEXT, "layer": 2}), "layer", "no layer 2"),
        ("/lab/api/inspect", json!({"text": TEXT, "layer": 0, "head": 4}), "head", "no head 4"),
        ("/lab/api/inspect", json!({"text": TEXT, "head": 1}), "head", "needs a 'layer'"),
        ("/lab/api/inspect", json!({"text": ""}), "text", "empty"),
        ("/lab/api/inspect", json!({"ids": [1, 512]}), "ids", "below 512"),
        ("/lab/api/inspect", json!({"ids": []}), "ids", "empty"),
        ("/lab/api/inspect", json!({"prompt": TEXT}), "text", "give 'text'"),
        ("/lab/api/inspect", json!({"text": TEXT, "temperature": 3}), "temperature", "between 0 and 2"),
        ("/lab/api/inspect", json!({"text": TEXT, "top": 0}), "top", "1..=200"),
        ("/lab/api/inspect", json!({"text": TEXT, "layer": "one"}), "layer", "non-negative integer"),
        ("/lab/api/tokens", json!({"text": 7}), "text", "must be a string"),
        ("/lab/api/tokens", json!({"text": "a".repeat(20_001)}), "text", "20000 characters"),
    ] {
        let (status, r) = post_json(&s.url, path, body.clone());
        assert_eq!(status, 400, "{body}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
        assert_eq!(r["error"]["param"], field, "{body}");
    }
    for raw in ["{not json", "[1, 2]"] {
        let (status, text) = post(&s.url, "/lab/api/inspect", raw, &[]);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("\"message\""));
    }
    // The lab still answers after all that.
    assert_eq!(post_json(&s.url, "/lab/api/inspect", json!({"text": TEXT})).0, 200);
}

#[test]
fn serve_has_the_lab_at_its_root_behind_its_api_key() {
    let s = serve(&["--api-key", "sesame"]);
    assert_eq!(get(&s.url, "/").0, 200, "the page itself is public");
    let (status, text) = post(&s.url, "/lab/api/inspect", &json!({"text": TEXT}).to_string(), &[]);
    assert_eq!(status, 401, "{text}");
    let key = [("authorization", "Bearer sesame")];
    let (status, text) = post(&s.url, "/lab/api/inspect", &json!({"text": TEXT}).to_string(), &key);
    assert_eq!(status, 200, "{text}");
}

#[test]
fn the_run_view_reads_metrics_while_they_grow() {
    let dir = common::temp_dir("lab-run-view");
    let metrics = dir.join("metrics.jsonl");
    let rows = [
        json!({"step": 1, "loss": 6.2, "lr": 0.001, "tokens_per_s": 100.0}),
        json!({"step": 2, "loss": 5.9, "lr": 0.001, "val_loss": 6.0, "sample": "Once upon"}),
    ];
    let mut text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    text.push_str("{\"step\": 3, \"lo"); // the trainer is halfway through writing a line
    std::fs::write(&metrics, text).unwrap();
    let s = lab(Some(&dir));
    let (status, _, body) = get(&s.url, "/lab/api/run");
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        r["rows"],
        json!([{"step": 1, "loss": 6.2, "lr": 0.001},
        {"step": 2, "loss": 5.9, "lr": 0.001, "val_loss": 6.0, "sample": "Once upon"}])
    );
    std::fs::write(&metrics, format!("{}\n{}\n{}\n", rows[0], rows[1], json!({"step": 3, "loss": 5.5})))
        .unwrap();
    let (_, _, body) = get(&s.url, "/lab/api/run");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["rows"].as_array().unwrap().len(), 3);
    let (_, _, card) = get(&s.url, "/lab/api/model");
    assert!(card.contains(&dir.display().to_string()), "{card}");
    drop(s);

    // A directory that is not a run is refused before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(["lab", "--model", &fixture().to_string_lossy(), "--port", "0", "--run"])
        .arg(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a training run: it has no metrics.jsonl"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_quantized_model_is_served_and_shown_as_such() {
    let dir = common::temp_dir("lab-q4");
    let file = dir.join("tiny-q4.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(["quantize", "--model", &fixture().to_string_lossy(), "--type", "q4_0", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = start(&["lab", "--model", &file.to_string_lossy(), "--port", "0"].map(String::from));
    let (_, _, card) = get(&s.url, "/lab/api/model");
    let card: Value = serde_json::from_str(&card).unwrap();
    assert_eq!(card["weights"], "q4_0 (LM head q8_0)");
    // The lab's forward pass and the server's decoding both run on it.
    let (status, r) = post_json(&s.url, "/lab/api/inspect", json!({"text": TEXT, "top": 3}));
    assert_eq!(status, 200, "{r}");
    let want = cli(&["inspect", "--model", &file.to_string_lossy(), "--json", "--top-k", "3", TEXT]);
    assert_eq!(r["tokens"], want["tokens"]);
    let body = json!({"model": "tiny-q4.gguf", "prompt": TEXT, "max_tokens": 5, "temperature": 0});
    let (status, c) = post_json(&s.url, "/v1/completions", body);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["usage"]["completion_tokens"], 5);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}
