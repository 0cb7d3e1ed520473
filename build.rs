// Release links go through scripts/link-release.sh, which reads the hot-function lists in link/
// (see .cargo/config.toml). Cargo does not know about them, so a change to them must relink.
fn main() {
    for path in [
        "link/hot-text.txt",
        "link/hot-text-armv7.txt",
        "scripts/link-release.sh",
        "scripts/link-release-armv7.sh",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
