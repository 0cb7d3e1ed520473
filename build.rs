// Release links go through scripts/link-release.sh, which reads link/hot-text.txt (see
// .cargo/config.toml). Cargo does not know about either, so a change to them must relink.
fn main() {
    println!("cargo:rerun-if-changed=link/hot-text.txt");
    println!("cargo:rerun-if-changed=scripts/link-release.sh");
}
