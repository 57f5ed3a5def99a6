//! The Python package, as a user gets it: `pip install ./python` builds the extension
//! (crates/minillm-py) with maturin into the Python of $MINILLM_PYTHON, then its pytest suite
//! (python/tests: the API against this command line) and the lab notebook
//! (notebooks/lab.ipynb, executed top to bottom by nbclient) must pass.
//!
//! The build has a target directory of its own (target/python) so it never waits on the lock
//! of the `cargo test` running it. Without $MINILLM_PYTHON the test says so loudly and passes,
//! unless MINILLM_REQUIRE_PYTHON_PACKAGE=1 (set by .ci/run).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn required() -> bool {
    std::env::var("MINILLM_REQUIRE_PYTHON_PACKAGE").is_ok_and(|v| v == "1")
}

/// The Python to install into, or None (after saying why) when the test cannot run here.
fn python() -> Option<PathBuf> {
    match std::env::var_os("MINILLM_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if required() => panic!("MINILLM_REQUIRE_PYTHON_PACKAGE=1 but MINILLM_PYTHON is not set"),
        None => {
            eprintln!(
                "!!! SKIPPED the Python package's tests: set MINILLM_PYTHON to a Python with pip \
                 (and pytest) to build, install and test it"
            );
            None
        }
    }
}

fn has_module(python: &Path, module: &str) -> bool {
    Command::new(python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_python_package_installs_and_its_tests_and_notebook_pass() {
    let Some(python) = python() else { return };
    let root = root();
    // With maturin at hand the build needs no network; without, pip fetches it into an
    // isolated build environment.
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--force-reinstall",
        "--no-deps",
    ]);
    if has_module(&python, "maturin") {
        // The build backend runs the `maturin` command: the venv's bin directory goes first.
        let bin = python.parent().unwrap_or(Path::new("."));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
        pip.arg("--no-build-isolation").env("PATH", std::env::join_paths(paths).unwrap());
    }
    let status = pip
        .arg(root.join("python"))
        .env("CARGO_TARGET_DIR", root.join("target/python"))
        .status()
        .expect("cannot run pip");
    assert!(status.success(), "pip install ./python failed (its output is above)");
    for module in ["pytest", "numpy"] {
        if !has_module(&python, module) {
            assert!(!required(), "{} has no {module}", python.display());
            eprintln!("!!! SKIPPED the Python package's tests: {} has no {module}", python.display());
            return;
        }
    }
    // From the repository's root, so that `import minillm` finds the installed package, not
    // the python/minillm sources (which lack the compiled extension).
    let status = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "python/tests"])
        .current_dir(&root)
        .env("MINILLM_BIN", env!("CARGO_BIN_EXE_minillm"))
        .status()
        .expect("cannot run pytest");
    assert!(status.success(), "the Python package's tests failed (pytest's report is above)");
}
