//! A size-limited tmpfs mounted for a test's life, to fill or make read-only: mounting needs root
//! (CI runs as root); elsewhere tests skip with the reason, unless MINILLM_REQUIRE_TMPFS is set.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted at `dir` for the test's life.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        match mounted {
            true => Some(Tmpfs(dir.to_path_buf())),
            false if std::env::var_os("MINILLM_REQUIRE_TMPFS").is_some() => {
                panic!("MINILLM_REQUIRE_TMPFS is set but a tmpfs cannot be mounted at {}", dir.display())
            }
            false => {
                eprintln!("skipped: mounting a tmpfs needs root");
                None
            }
        }
    }

    /// Fills what is left with a file (removed by `free`).
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }

    pub fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }

    /// Grows (or shrinks) the filesystem to `size`, keeping what it holds.
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn read_only(&self) {
        let status = Command::new("mount").args(["-o", "remount,ro"]).arg(&self.0).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
