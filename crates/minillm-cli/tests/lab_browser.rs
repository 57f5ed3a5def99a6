//! The lab in real headless Chromium: tests/lab/lab_e2e.mjs (playwright-core) types, drags
//! sliders with the keyboard, clicks and hovers as a learner would and reports what the page
//! showed; this test checks it against the CLI. Screenshots of every view land in
//! target/lab-screenshots/ (or $MINILLM_SCREENSHOTS; scripts/lab_screenshots.sh refreshes the
//! guide's copies).
//!
//! Needs Chromium (/usr/bin/chromium or $MINILLM_CHROMIUM; Debian's `chromium` package) and Node
//! with npm (playwright-core is installed from the lockfile on first use). Without them the test
//! says so loudly and passes, unless MINILLM_REQUIRE_BROWSER=1 (set by .ci/run), when it fails.

mod common;

use common::{cli, fixture, start};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_PROMPT: &str = "It was the best of times";

#[test]
fn the_lab_works_in_a_real_browser() {
    let Some(e2e) = browser_setup() else { return };
    let prompt = std::env::var("MINILLM_LAB_PROMPT").unwrap_or_else(|_| DEFAULT_PROMPT.into());
    let prompt = prompt.as_str();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let metrics = work.join("metrics.jsonl");
    // Thirty steps made up here, or (for the guide's screenshots) a real run's metrics, copied so
    // that the row the script appends lands in the copy.
    let rows: String = match std::env::var_os("MINILLM_LAB_RUN") {
        Some(run) => std::fs::read_to_string(Path::new(&run).join("metrics.jsonl")).unwrap(),
        None => (1..=30)
            .map(|step| {
                let mut row = json!({"step": step, "loss": 6.0 - 0.1 * step as f64, "lr": 0.001});
                if step % 10 == 0 {
                    row["val_loss"] = (6.2 - 0.1 * step as f64).into();
                    row["sample"] = format!("sample at step {step}").into();
                }
                format!("{row}\n")
            })
            .collect(),
    };
    let logged: Vec<Value> = rows.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps = logged.iter().filter(|r| r.get("loss").is_some()).count() as u64;
    let samples = logged.iter().filter(|r| r.get("sample").is_some()).count() as u64;
    std::fs::write(&metrics, &rows).unwrap();
    let shots = std::env::var_os("MINILLM_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../lab-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let model =
        std::env::var("MINILLM_LAB_MODEL").unwrap_or_else(|_| fixture().to_string_lossy().into_owned());
    let args: Vec<String> = ["lab", "--model", &model, "--port", "0", "--run", &work.to_string_lossy()]
        .map(String::from)
        .to_vec();
    let lab = start(&args);
    let mut card = common::agent().get(&format!("{}/lab/api/model", lab.url)).call().unwrap();
    let card: Value = serde_json::from_str(&card.body_mut().read_to_string().unwrap()).unwrap();
    let config = &card["config"];
    let out = Command::new("node")
        .arg(e2e.join("lab_e2e.mjs"))
        .arg(format!("{}/", lab.url))
        .args([shots.as_os_str(), metrics.as_os_str()])
        .arg(prompt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ids = |v: &Value| -> Vec<u64> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect() };
    assert_eq!(r["title"], "minillm lab");
    assert_eq!(r["console_errors_before_bad_input"], json!([]), "the page logged errors");

    // Tokens: the ids shown are `minillm tokenizer encode`'s.
    let want = cli(&["tokenizer", "encode", "--tokenizer", &model, "--json", prompt]);
    assert_eq!(ids(&r["bpe_ids"]), ids(&want["ids"]));
    assert_eq!(r["counts"]["tok-bpe"], want["count"]);
    assert_eq!(r["counts"]["tok-char"].as_u64(), Some(prompt.chars().count() as u64));
    assert!(r["token_title"].as_str().unwrap().starts_with(&format!("id {}", want["ids"][0])));

    // Next token: the bars are `inspect --json`'s, the slider reshapes them.
    let seen = cli(&["inspect", "--model", &model, "--json", "--top-k", "20", prompt]);
    let bars = r["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 20);
    for (bar, want) in bars.iter().zip(seen["next"].as_array().unwrap()) {
        assert_eq!(bar["id"], want["id"]);
        assert_eq!(bar["prob"].as_f64(), want["prob"].as_f64());
        assert!((bar["shaped"].as_f64().unwrap() - bar["prob"].as_f64().unwrap()).abs() < 1e-6);
    }
    assert_eq!(r["temperature"].as_f64(), Some(0.5));
    let cold = r["bars_cold"].as_array().unwrap();
    let (p0, c0) = (bars[0]["shaped"].as_f64().unwrap(), cold[0]["shaped"].as_f64().unwrap());
    assert!(c0 > p0, "a lower temperature sharpens: top bar {p0} -> {c0}");
    assert_eq!(cold[0]["prob"], bars[0]["prob"], "the model's own probabilities stay");
    assert_eq!(r["top_k"].as_f64(), Some(3.0));
    let dropped: Vec<bool> =
        r["bars_top_k"].as_array().unwrap().iter().map(|b| b["dropped"] == true).collect();
    assert_eq!(dropped, [vec![false; 3], vec![true; 17]].concat());
    assert!(r["kept_text"].as_str().unwrap().contains("pick from 3 of"));

    // Step appends exactly the one token the sampler drew.
    let (before, after) = (ids(&r["before_step"]), ids(&r["after_step"]));
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    let sampled = r["sampled_text"].as_str().unwrap();
    assert!(sampled.contains(&format!("(id {}", after[before.len()])), "{sampled}");
    assert!(r["text_after_step"].as_str().unwrap().starts_with(prompt));
    let generated = r["generated"].as_str().unwrap();
    assert!(generated.len() > r["text_after_step"].as_str().unwrap().len(), "generate streamed nothing");

    // Attention: T x T cells, exactly the upper triangle masked, rows from `inspect`.
    let t = r["attention_tokens"].as_u64().unwrap() as usize;
    assert_eq!(t, after.len());
    assert_eq!(r["cells"].as_u64(), Some((t * t) as u64));
    let masked: Vec<(u64, u64)> = r["masked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap()))
        .collect();
    assert_eq!(masked.len(), t * (t - 1) / 2);
    assert!(masked.iter().all(|(i, j)| j > i));
    assert_eq!(r["first_row"][0].as_f64(), Some(1.0), "the first token can only look at itself");
    assert!(r["cell_info"].as_str().unwrap().contains("(row 1, column 0)"));
    assert!(r["cell_info_keyboard"].as_str().unwrap().contains("(row 2, column 0)"));

    // Inside: the card and one row of norms per stage (the embedding, then each block).
    assert!(r["card"].as_str().unwrap().contains("parameters"));
    assert_eq!(r["norm_rows"].as_u64(), Some(config["n_layer"].as_u64().unwrap() + 1));

    // Training: every step plotted, every sample listed, and an appended row shows up live.
    assert_eq!((r["train_points"].as_u64(), r["samples"].as_u64()), (Some(steps), Some(samples)));
    assert_eq!(r["train_points_after"].as_u64(), Some(steps + 1));
    assert_eq!(r["tab_after_arrow"], "tab-inside");
    assert!(
        r["narrow_overflow"].as_i64().unwrap() <= 0,
        "the page is wider than a 420px window; what sticks out: {}",
        r["narrow_wide"]
    );
    let context = format!("context holds {}", config["block_size"]);
    assert!(r["error"].as_str().unwrap().contains(&context), "{}", r["error"]);
    assert_eq!(r["error_class"], "error");
    for view in ["tokens", "next-token", "attention", "inside", "training", "narrow"] {
        assert!(shots.join(format!("{view}.png")).is_file(), "no screenshot of {view}");
    }
}

/// The directory to run the browser script in, with playwright-core installed; `None` (after
/// saying why) when Chromium or Node is missing and the browser is not required.
fn browser_setup() -> Option<PathBuf> {
    let required = std::env::var("MINILLM_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let missing = |what: String| -> Option<PathBuf> {
        assert!(!required, "\n\n!!! The browser test is required (MINILLM_REQUIRE_BROWSER=1) but {what}.\n");
        eprintln!(
            "\n!!! SKIPPED the lab's browser test: {what}.\n!!! Install Debian's `chromium` and Node (bash .ci/run does) to run it.\n"
        );
        None
    };
    let chromium = std::env::var_os("MINILLM_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return missing(format!("there is no Chromium at {}", chromium.display()));
    }
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return missing("there is no `node` on the PATH".into());
    }
    // The script and its lockfile, copied next to their node_modules under target/.
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["lab_e2e.mjs", "package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    if !installed(&dir) {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !installed(&dir) {
            return missing(format!("`npm ci` could not install playwright-core into {}", dir.display()));
        }
    }
    Some(dir)
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/playwright-core/package.json").is_file()
}
