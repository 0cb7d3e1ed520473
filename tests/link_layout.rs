//! The release link's hot-code layout (scripts/link-release.sh, BENCHMARKS.md "Code layout")
//! matches link/hot-text*.txt to this link's symbols through normalised names. These tests pin
//! the normalisation: the same function must get the same key whatever compiler built it, and
//! different functions must keep different keys.

use std::io::Write;
use std::process::{Command, Stdio};

fn keys(mangled: &[&str]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/link-release.sh");
    let mut child = Command::new(script)
        .arg("--keys")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run scripts/link-release.sh --keys");
    let mut input = mangled.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "--keys failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn v0_names_lose_crate_disambiguators_and_inherent_impl_brackets() {
    let got = keys(&[
        // <alloc::raw_vec::RawVec<ocpp_agent::ocpp::station::Request>>::grow_one (rustc 1.99)
        "_RNvMs4_NtCsgFX3jaOk65H_5alloc7raw_vecINtB5_6RawVecNtNtNtCs79KNMScXKC4_10ocpp_agent4ocpp7station7RequestE8grow_oneBS_",
        // the same function with other crate hashes (another compiler or profile)
        "_RNvMs4_NtCs0123456789a_5alloc7raw_vecINtB5_6RawVecNtNtNtCsabcdefghijk_10ocpp_agent4ocpp7station7RequestE8grow_oneBS_",
        // a trait impl keeps its brackets: <RawVec<PathBuf> as Drop>::drop
        "_RNvXs1_NtCsgFX3jaOk65H_5alloc7raw_vecINtB5_6RawVecNtNtCs8ZKwes1zzDd_3std4path7PathBufENtNtNtCskADBYZwJmSU_4core3ops4drop4Drop4dropCs7EN1ZzKxLOd_8gpiocdev",
    ]);
    assert_eq!(
        got,
        [
            "alloc::raw_vec::RawVec<ocpp_agent::ocpp::station::Request>::grow_one",
            "alloc::raw_vec::RawVec<ocpp_agent::ocpp::station::Request>::grow_one",
            "<alloc::raw_vec::RawVec<std::path::PathBuf> as core::ops::drop::Drop>::drop",
        ]
    );
}

#[test]
fn legacy_names_lose_hashes_and_llvm_suffixes_and_c_names_stay() {
    let got = keys(&[
        "_ZN4core3fmt5write17h0123456789abcdefE",
        "_ZN4core3fmt5write17hfedcba9876543210E.llvm.1234567890",
        "_ZN4core3fmt9Formatter3pad17h0123456789abcdefE",
        "sqlite3VdbeExec",
    ]);
    assert_eq!(
        got,
        [
            "core::fmt::write",
            "core::fmt::write",
            "core::fmt::Formatter::pad",
            "sqlite3VdbeExec",
        ]
    );
}

#[test]
fn the_committed_lists_are_normalised_keys() {
    // A list written by hand or by an older normaliser would silently match nothing.
    for list in ["link/hot-text.txt", "link/hot-text-armv7.txt"] {
        let path = format!("{}/{list}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let entries: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            entries.len() > 1000,
            "{list}: only {} entries",
            entries.len()
        );
        for entry in &entries {
            assert!(
                !entry.starts_with("_R") && !entry.starts_with("_ZN"),
                "{list}: mangled name {entry}"
            );
            assert!(
                !has_legacy_hash(entry),
                "{list}: legacy hash left in {entry}"
            );
            assert!(
                !has_disambiguator(entry),
                "{list}: crate disambiguator left in {entry}"
            );
        }
        let mut sorted = entries.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), entries.len(), "{list}: duplicate entries");
    }
}

/// `...::h0123456789abcdef` at the end: a legacy symbol hash.
fn has_legacy_hash(key: &str) -> bool {
    key.rsplit_once("::h")
        .is_some_and(|(_, h)| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `crate[0123abcd...]`: a v0 crate disambiguator as c++filt prints it (slices such as `[u8]` and
/// arrays such as `[char; 2: usize]` are not).
fn has_disambiguator(key: &str) -> bool {
    key.split('[').skip(1).any(|rest| {
        rest.split_once(']').is_some_and(|(inside, _)| {
            inside.len() >= 8 && inside.chars().all(|c| c.is_ascii_hexdigit())
        })
    })
}
