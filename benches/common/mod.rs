//! What both benchmarks share: enough of libtest's interface for `cargo nextest run
//! --all-targets` (which lists a binary's tests, then runs each by name) and `cargo test
//! --all-targets` to run a bench as one quick smoke test, while `cargo bench` (which passes
//! `--bench`) runs the full benchmark.

/// `None` when this invocation must not run the benchmark (a listing, or a filter that does
/// not match `name`); otherwise whether to do the quick run.
pub fn harness(name: &str) -> Option<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{name}: test");
        }
        return None;
    }
    let filter = args.iter().find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !name.contains(f.as_str())) {
        return None;
    }
    Some(!args.iter().any(|a| a == "--bench"))
}

/// A size from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
