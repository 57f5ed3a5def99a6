//! Small formatting helpers shared by the subcommands.

use indicatif::{ProgressBar, ProgressStyle};

/// 1234567 -> "1,234,567".
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text with line breaks, tabs and other control characters written as escapes, so a token
/// shows on one line exactly as it is.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    text.chars().for_each(|c| push_escaped(&mut out, c, false));
    out
}

fn push_escaped(out: &mut String, c: char, quoted: bool) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '"' | '\\' if quoted => {
            out.push('\\');
            out.push(c);
        }
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// A token's bytes in double quotes, escaped; bytes that are not UTF-8 show as `\xNN`.
pub fn token(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        chunk.valid().chars().for_each(|c| push_escaped(&mut out, c, true));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// A progress bar on stderr; invisible when stderr is not a terminal.
pub fn progress(len: u64, message: &str, unit_is_bytes: bool) -> ProgressBar {
    let template = if unit_is_bytes {
        "{msg:12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    } else {
        "{msg:12} [{bar:30}] {pos}/{len} ({eta})"
    };
    let bar = ProgressBar::new(len).with_message(message.to_string());
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar
}
