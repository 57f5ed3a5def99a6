//! One libFuzzer target for every parser of outside input: `MINILLM_FUZZ_PARSER` names which
//! (the names of `crates/minillm/tests/common/parsers.rs`, the table the bounded test in the
//! normal suite runs too). A panic, an abort, an allocation past libFuzzer's `-rss_limit_mb`, a
//! hang past `-timeout` or an error that is not a sentence is a failure; libFuzzer saves the
//! input under `fuzz/artifacts/parsers/`.
#![no_main]

#[path = "../../crates/minillm/tests/common/parsers.rs"]
#[allow(dead_code)] // the table serves the tests too
mod parsers;

use libfuzzer_sys::fuzz_target;
use parsers::{Failure, Parser};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The parser and the directory its inputs are written to, set up on the first input.
fn state() -> &'static (Parser, PathBuf) {
    static STATE: OnceLock<(Parser, PathBuf)> = OnceLock::new();
    STATE.get_or_init(|| {
        let name = std::env::var("MINILLM_FUZZ_PARSER").expect("MINILLM_FUZZ_PARSER names the parser to fuzz");
        let dir = std::env::temp_dir().join(format!("minillm-fuzz-{name}-{}", std::process::id()));
        let fixtures = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/minillm/tests/fixtures"));
        let all = parsers::all(&fixtures, &dir.join("seeds"));
        let names: Vec<&str> = all.iter().map(|p| p.name).collect();
        let message = format!("no parser is named '{name}' (there are: {})", names.join(", "));
        let parser = all.into_iter().find(|p| p.name == name).expect(&message);
        parser.prepare(&dir);
        (parser, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let (parser, dir) = state();
    if let Err(Failure::NotASentence(message)) = parser.run(dir, data) {
        panic!("{}: an error that is not a sentence: {message}", parser.name);
    }
});
