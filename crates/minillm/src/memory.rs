//! Memory asked for by sizes that come from outside (a model's shape, a batch, a context, a
//! number of serving slots) is checked before it is taken: Rust's allocator aborts the process
//! with "memory allocation of N bytes failed" when it cannot give memory, which no caller can
//! turn into a sentence. Buffers that size with the model are allocated fallibly ([`zeroed`]);
//! the sum a command will need is compared with the machine's memory first ([`ensure_fits`]).

use crate::error::{Error, Result};

/// `bytes` as a person reads it: `51.6 GB`, `740.0 MB`.
pub fn human(bytes: usize) -> String {
    match bytes as f64 {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b => format!("{:.1} MB", b / 1e6),
    }
}

/// `len` zeroed floats for `what`, or an error naming it and its size. Zeroed memory comes from
/// the allocator's zeroed path, as `vec![0.0; len]` does, so untouched pages cost nothing.
pub fn zeroed(len: usize, what: &str) -> Result<Vec<f32>> {
    let too_much = || {
        Error::Invalid(format!(
            "cannot allocate {} for {what}: more memory than this machine can give; choose a smaller model",
            human(len.saturating_mul(4))
        ))
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(len).map_err(|_| too_much())?;
    // SAFETY: the layout has a non-zero size (len > 0). A non-null pointer is an allocation of
    // exactly `layout` from the global allocator, zeroed, so it holds `len` valid f32s (all
    // bits zero is 0.0) and a Vec may own it with length and capacity `len`.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut f32;
        if ptr.is_null() {
            return Err(too_much());
        }
        Ok(Vec::from_raw_parts(ptr, len, len))
    }
}

/// The machine's memory and swap in bytes (Linux's /proc/meminfo), what an allocation can at
/// most be given; `None` where the system does not say.
pub fn machine_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<usize> {
        info.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
}

/// Refuses, before anything is allocated, a command that needs more than the machine has:
/// `parts` are what the memory goes to and their bytes, `advice` what to change.
pub fn ensure_fits(what: &str, parts: &[(&str, usize)], advice: &str) -> Result<()> {
    let need = parts.iter().fold(0usize, |sum, (_, b)| sum.saturating_add(*b));
    let Some(have) = machine_bytes() else { return Ok(()) };
    if need <= have {
        return Ok(());
    }
    let list: Vec<String> = parts.iter().map(|(name, b)| format!("{name} {}", human(*b))).collect();
    Err(Error::Invalid(format!(
        "{what} needs about {} ({}), more than this machine's {} of memory and swap; {advice}",
        human(need),
        list.join(", "),
        human(have)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_and_impossible_ones_are_errors() {
        let v = zeroed(1000, "a test").unwrap();
        assert_eq!((v.len(), v.capacity()), (1000, 1000));
        assert!(v.iter().all(|&x| x == 0.0));
        assert!(zeroed(0, "nothing").unwrap().is_empty());
        // More than any address space: an error that names the buffer, not an abort.
        let err = zeroed(usize::MAX / 2, "the parameters").unwrap_err().to_string();
        assert!(err.contains("the parameters") && err.contains("cannot allocate"), "{err}");
    }

    #[test]
    fn a_need_past_the_machine_is_refused_with_its_parts() {
        assert!(ensure_fits("a small job", &[("weights", 1000)], "-").is_ok());
        if machine_bytes().is_some() {
            let err =
                ensure_fits("training", &[("weights", usize::MAX / 2), ("gradients", 1 << 40)], "use less")
                    .unwrap_err()
                    .to_string();
            assert!(
                err.contains("training needs about") && err.contains("weights") && err.ends_with("use less"),
                "{err}"
            );
        }
    }
}
