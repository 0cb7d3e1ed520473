//! Two GPIO lines are two connectors, seen live by the CSMS: the ARMv7 release binary on
//! Debian's armmp kernel (qemu-system-arm, see tests/support/vm.rs), its plug inputs on a
//! gpio-sim chip driven from the simulator's sysfs side, the Python CSMS on the host.
//!
//! EVSE 1 names its line by chip label and offset (active high, 1 s debounce, contactor on
//! the line named CONTACTOR1), EVSE 2 by line name alone (active low). Checked at the CSMS:
//! one StatusNotification per edge for the EVSE concerned and none for the other, a glitch
//! shorter than the debounce period gives none, the contactor line follows the transaction
//! (read from the simulator), and when the chip goes away or a line is held by another
//! consumer the connector is Faulted, then recovers, while the agent keeps running.
//!
//! Needs the VM pieces (`scripts/vm/prepare.sh`) and the ARMv7 build
//! (`scripts/cross-armv7.sh`); skipped with the reason printed when they are missing, unless
//! `OCPP_VM_REQUIRED=1` (CI).

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::vm::{self, GUEST_CSMS_URL, Vm};
use support::{Csms, wait_for};

const SIM: &str = "/sys/kernel/config/gpio-sim/plugs";

/// EVSE 1 by chip label and offset, with its contactor on a named line; EVSE 2 by line name
/// alone, active low.
const EVSES: &str = r#"[[evse]]
id = 1
plug = { backend = "gpio", chip = "ocpp-sim", line = 0, debounce_ms = 1000 }
contactor = { backend = "gpio", chip = "ocpp-sim", line = "CONTACTOR1" }

[[evse]]
id = 2
plug = { backend = "gpio", line = "PLUG2", active_low = true, debounce_ms = 50 }
"#;

fn config() -> String {
    let sim = "[[evse]]\nid = 1\nplug = { backend = \"sim\" }\n\n[[evse]]\nid = 2\nplug = { backend = \"sim\" }\n";
    let text = support::agent_config(Path::new("/data"), GUEST_CSMS_URL, "");
    assert!(text.contains(sim));
    text.replace(sim, EVSES)
        .replace("filter = \"debug\"", "filter = \"info\"")
}

/// (evse, status) of every StatusNotification so far.
fn statuses(csms: &Csms) -> Vec<(u64, String)> {
    csms.calls("StatusNotification")
        .iter()
        .map(|c| {
            let p = &c["payload"];
            (
                p["evseId"].as_u64().unwrap(),
                p["connectorStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Sets line `offset` of the simulator's bank to `pull` ("pull-up" / "pull-down"); the device
/// and chip names are read each time, as they change when the chip is re-created.
fn pull(offset: u32, pull: &str) -> String {
    format!(
        "echo {pull} > /sys/devices/platform/$(cat {SIM}/dev_name)/$(cat {SIM}/bank0/chip_name)/sim_gpio{offset}/pull"
    )
}

fn sim_value(vm: &mut Vm, offset: u32) -> String {
    vm.ok(&format!(
        "cat /sys/devices/platform/$(cat {SIM}/dev_name)/$(cat {SIM}/bank0/chip_name)/sim_gpio{offset}/value"
    ))
    .trim()
    .to_owned()
}

struct Check<'a> {
    csms: &'a Csms,
    seen: usize,
}

impl Check<'_> {
    /// The next StatusNotifications are exactly `expected` (in order), and nothing else
    /// arrives within a settling time.
    fn next(&mut self, what: &str, expected: &[(u64, &str)]) {
        let want: Vec<(u64, String)> = expected.iter().map(|(e, s)| (*e, s.to_string())).collect();
        let got = wait_for(Duration::from_secs(30), what, || {
            let all = statuses(self.csms);
            (all.len() >= self.seen + want.len()).then(|| all[self.seen..].to_vec())
        });
        assert_eq!(got[..want.len()], want[..], "{what}");
        self.seen += want.len();
        self.quiet(what, Duration::from_millis(1500));
    }

    /// No StatusNotification arrives for `wait`.
    fn quiet(&mut self, what: &str, wait: Duration) {
        std::thread::sleep(wait);
        let all = statuses(self.csms);
        assert_eq!(
            all[self.seen..].to_vec(),
            Vec::<(u64, String)>::new(),
            "unexpected StatusNotification after {what}"
        );
    }
}

#[test]
fn two_gpio_lines_are_two_connectors_on_an_armv7_kernel() {
    let Some(env) = vm::prepare() else {
        return;
    };
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = vm::agent_disk(&env, dir.path(), &config(), &[]);
    let mut vm = Vm::boot(&env, dir.path(), &disk, csms.port);
    println!("guest up in {:?}", vm.booted_in);

    // The simulator: one bank of 4 lines, labelled; line 1 and 2 named.
    vm.ok(&format!(
        "mkdir {SIM} {SIM}/bank0 {SIM}/bank0/line1 {SIM}/bank0/line2 && \
         echo 4 > {SIM}/bank0/num_lines && echo ocpp-sim > {SIM}/bank0/label && \
         echo PLUG2 > {SIM}/bank0/line1/name && echo CONTACTOR1 > {SIM}/bank0/line2/name && \
         echo 1 > {SIM}/live"
    ));
    // both unplugged: EVSE 1 low, EVSE 2 (active low) high
    vm.ok(&format!(
        "{} && {}",
        pull(0, "pull-down"),
        pull(1, "pull-up")
    ));
    vm.ok("agent-start &");

    let mut check = Check {
        csms: &csms,
        seen: 0,
    };
    // at boot, each connector's status once (the order between EVSEs is the agent's)
    let first = wait_for(Duration::from_secs(60), "the boot-time statuses", || {
        let all = statuses(&csms);
        (all.len() >= 2).then_some(all)
    });
    let mut boot: Vec<(u64, String)> = first[..2].to_vec();
    boot.sort();
    assert_eq!(
        boot,
        vec![(1, "Available".to_string()), (2, "Available".to_string())]
    );
    check.seen = 2;
    check.quiet("the boot-time statuses", Duration::from_millis(1500));

    vm.ok(&pull(0, "pull-up"));
    check.next("plugging EVSE 1 (line 0 high)", &[(1, "Occupied")]);
    vm.ok(&pull(1, "pull-down"));
    check.next(
        "plugging EVSE 2 (line PLUG2 low: active low)",
        &[(2, "Occupied")],
    );

    // A transaction on EVSE 1 closes its contactor: the simulator sees the output line high.
    assert_eq!(
        sim_value(&mut vm, 2),
        "0",
        "contactor open before authorization"
    );
    vm.ok("/data/ocpp-agent ctl --config /data/agent.toml token 1 T1");
    wait_for(Duration::from_secs(30), "the contactor line high", || {
        (sim_value(&mut vm, 2) == "1").then_some(())
    });

    vm.ok(&pull(0, "pull-down"));
    check.next("unplugging EVSE 1", &[(1, "Available")]);
    wait_for(Duration::from_secs(30), "the contactor line low", || {
        (sim_value(&mut vm, 2) == "0").then_some(())
    });
    vm.ok(&pull(1, "pull-up"));
    check.next("unplugging EVSE 2", &[(2, "Available")]);

    // A 100 ms glitch on EVSE 1 (1 s debounce): nothing; the same commands with 4 s between
    // them: both edges. (The kernel debounces in software: it samples the line once the
    // period has passed without an edge. A guest vCPU starved by a loaded host for longer
    // than pulse - period would miss the pulse, hence the wide margin.)
    vm.ok(&format!(
        "{} && usleep 100000 && {}",
        pull(0, "pull-up"),
        pull(0, "pull-down")
    ));
    check.quiet("a 100 ms glitch on EVSE 1", Duration::from_secs(3));
    vm.ok(&format!(
        "{} && usleep 4000000 && {}",
        pull(0, "pull-up"),
        pull(0, "pull-down")
    ));
    check.next(
        "a 4 s pulse on EVSE 1",
        &[(1, "Occupied"), (1, "Available")],
    );

    // The chip goes away: both connectors Faulted, the agent keeps running.
    vm.ok(&format!("echo 0 > {SIM}/live"));
    let faulted = wait_for(Duration::from_secs(30), "both Faulted", || {
        let all = statuses(&csms);
        (all.len() >= check.seen + 2).then(|| all[check.seen..].to_vec())
    });
    let mut sorted = faulted[..2].to_vec();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![(1, "Faulted".to_string()), (2, "Faulted".to_string())]
    );
    check.seen += 2;
    // It comes back with PLUG2 held by another consumer (a hog): EVSE 1 recovers (its line
    // is pulled down again: Available), EVSE 2 stays Faulted.
    vm.ok(&format!(
        "mkdir {SIM}/bank0/line1/hog && echo other > {SIM}/bank0/line1/hog/name && \
         echo input > {SIM}/bank0/line1/hog/direction && echo 1 > {SIM}/live"
    ));
    check.next("the chip back with PLUG2 held", &[(1, "Available")]);
    check.quiet("PLUG2 held", Duration::from_secs(6));
    // Released: EVSE 2 recovers; its line is pulled down (the default): plugged, active low.
    vm.ok(&format!(
        "echo 0 > {SIM}/live && rmdir {SIM}/bank0/line1/hog && echo 1 > {SIM}/live"
    ));
    // EVSE 1's old request died with the chip: Faulted, then Available again; EVSE 2 ends
    // Occupied (the agent clears the fault before it gives the level, so an Available may
    // come first).
    let only = |all: &[(u64, String)], evse: u64| -> Vec<String> {
        all.iter()
            .filter(|(e, _)| *e == evse)
            .map(|(_, s)| s.clone())
            .collect()
    };
    let back = wait_for(Duration::from_secs(40), "the recovery", || {
        let new = statuses(&csms)[check.seen..].to_vec();
        (only(&new, 1).len() >= 2 && only(&new, 2).last().is_some_and(|s| s == "Occupied"))
            .then_some(new)
    });
    assert_eq!(only(&back, 1), ["Faulted", "Available"], "{back:?}");
    let evse2 = only(&back, 2);
    assert!(
        evse2 == ["Occupied"] || evse2 == ["Available", "Occupied"],
        "{back:?}"
    );
    check.seen += back.len();
    vm.ok(&pull(1, "pull-up"));
    check.next("unplugging EVSE 2 after the recovery", &[(2, "Available")]);

    // Still the same process, and every message valid.
    let (rc, _) = vm.sh("pidof ocpp-agent");
    assert_eq!(rc, 0, "the agent is no longer running");
    assert!(vm.console_text().matches("watching GPIO plug line").count() >= 4);
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
