//! Scratch directories, one per test, kept when the test fails.

use super::*;

pub(super) static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory of its own for one test (or one throwaway server). Removed when
/// dropped, unless the test is failing: then it is kept and its path printed.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let test = thread::current()
            .name()
            .map(|name| name.rsplit("::").next().unwrap_or(name).to_string())
            .unwrap_or_else(|| "test".into());
        let test: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(28)
            .collect();
        // Short enough for a Unix socket path (108 bytes) inside it.
        let path =
            std::env::temp_dir().join(format!("rbit-{}-{n}-{tag}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, 0o755);
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "test failed: keeping {} for inspection",
                self.path.display()
            );
            return;
        }
        make_removable(&self.path);
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// Give every directory under `dir` owner rwx so a non-root user can remove it.
fn make_removable(dir: &Path) {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            if let Ok(rd) = fs::read_dir(dir) {
                for entry in rd.flatten() {
                    make_removable(&entry.path());
                }
            }
        }
    }
}
