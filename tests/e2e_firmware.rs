//! Firmware update end to end (L01): the real agent against the Python `ocpp` CSMS, the image
//! served over HTTPS by the independent `tests/csms/fileserver.py`, a manufacturer PKI and a
//! signature made by openssl, and a shell script as the install command. Fault cases: the
//! first transfer is cut and the agent resumes it with a Range request; a bad signature never
//! reaches the installer.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fileserver::{FileServer, FtpServer};
use support::pki::{Ca, Issued, sign_file};
use support::{Agent, Csms, admin_call, agent_config, call_response, wait_for};

const T: Duration = Duration::from_secs(60);

struct Setup {
    pki: tempfile::TempDir,
    manufacturer: Ca,
    signer: Issued,
    server: FileServer,
    /// The image as served.
    image: Vec<u8>,
    csms: Csms,
    agent: Agent,
}

/// The image (`size` bytes) under the file server's root as `image.bin`, an HTTPS server for
/// it with `server_args`, the CSMS, and the agent with an install command that copies the
/// image to `installed.bin` in its directory.
fn setup(
    size: usize,
    server_args: &[&str],
    transfer_extra: &str,
    firmware_extra: &str,
) -> Option<Setup> {
    let pki = tempfile::tempdir().unwrap();
    let manufacturer = Ca::new(pki.path(), "manufacturer");
    let signer = manufacturer.issue_firmware_signer("signer");
    let web_ca = Ca::new(pki.path(), "web");
    let web = web_ca.issue("web", "/O=Test/CN=localhost", Some("DNS:localhost"), None);
    let root = pki.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let image: Vec<u8> = (0..size as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("image.bin"), &image).unwrap();
    let server = FileServer::start(&root, Some((&web.cert, &web.key)), server_args)?;
    let csms = Csms::start(&[])?;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\necho \"installing $1 for request $OCPP_FIRMWARE_REQUEST_ID\"\ncp \"$1\" {}\n",
            dir.path().join("installed.bin").display()
        ),
    )
    .unwrap();
    let text = agent_config(dir.path(), &csms.url(), "")
        + &format!(
            "\n[transfer]\nca_file = \"{}\"\n{transfer_extra}\n[firmware]\ninstall_command = [\"/bin/sh\", \"{}\"]\n{firmware_extra}\n",
            web_ca.cert.display(),
            script.display()
        );
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    let root_pem = std::fs::read_to_string(&manufacturer.cert).unwrap();
    let installed = call_response(csms.admin(admin_call(
        "InstallCertificate",
        json!({"certificateType": "ManufacturerRootCertificate", "certificate": root_pem}),
    )));
    assert_eq!(installed["status"], "Accepted", "{installed}");
    Some(Setup {
        pki,
        manufacturer,
        signer,
        server,
        image,
        csms,
        agent,
    })
}

impl Setup {
    fn update(&self, request_id: i64, signature_b64: &str) -> Value {
        self.update_from(request_id, &self.server.url("image.bin"), signature_b64)
    }

    fn update_from(&self, request_id: i64, location: &str, signature_b64: &str) -> Value {
        call_response(self.csms.admin(admin_call(
            "UpdateFirmware",
            json!({
                "requestId": request_id,
                "retries": 3,
                "retryInterval": 1,
                "firmware": {
                    "location": location,
                    "retrieveDateTime": "2020-01-01T00:00:00Z",
                    "signingCertificate": std::fs::read_to_string(&self.signer.cert).unwrap(),
                    "signature": signature_b64,
                },
            }),
        )))
    }

    fn statuses(&self) -> Vec<Value> {
        self.csms
            .calls("FirmwareStatusNotification")
            .iter()
            .map(|r| r["payload"].clone())
            .collect()
    }

    fn wait_status(&self, status: &str) -> Vec<Value> {
        wait_for(T, &format!("FirmwareStatusNotification {status}"), || {
            let all = self.statuses();
            all.iter().any(|s| s["status"] == status).then_some(all)
        })
    }

    fn security_events(&self) -> Vec<String> {
        self.csms
            .calls("SecurityEventNotification")
            .iter()
            .map(|r| r["payload"]["type"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn firmware_dir_is_empty(&self) -> bool {
        let dir = self.agent.dir.path().join("firmware");
        std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none())
    }
}

fn sign(s: &Setup, bytes: &[u8]) -> String {
    let path = s.pki.path().join("to-sign.bin");
    std::fs::write(&path, bytes).unwrap();
    sign_file(&s.signer.key, &path).1
}

fn names(statuses: &[Value]) -> Vec<&str> {
    statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect()
}

#[test]
fn a_signed_image_is_downloaded_resumed_after_a_cut_verified_and_installed() {
    // The first transfer is cut after 300,000 of 1,000,000 bytes.
    let Some(s) = setup(1_000_000, &["--drop-after", "300000"], "", "") else {
        return;
    };
    let signature = sign(&s, &s.image);
    let answer = s.update(41, &signature);
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let statuses = s.wait_status("Installed");
    assert!(
        statuses.iter().all(|st| st["requestId"] == 41),
        "{statuses:?}"
    );
    let mut seen = names(&statuses);
    seen.dedup(); // a retry may say Downloading again (L01.FR.30 note)
    assert_eq!(
        seen,
        [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "Installed"
        ]
    );
    let installed = std::fs::read(s.agent.dir.path().join("installed.bin")).unwrap();
    assert!(
        installed == s.image,
        "the installed image is the served one, byte for byte"
    );
    // The second request resumed where the cut left off.
    let requests = s.server.requests();
    let gets: Vec<(&str, u64)> = requests
        .iter()
        .map(|r| {
            (
                r["range"].as_str().unwrap_or("-"),
                r["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(gets.len(), 2, "{requests:?}");
    assert_eq!(gets[0], ("-", 300_000), "{requests:?}");
    assert_eq!(gets[1], ("bytes=300000-", 700_000), "{requests:?}");
    wait_for(T, "FirmwareUpdated security event", || {
        s.security_events()
            .contains(&"FirmwareUpdated".to_string())
            .then_some(())
    });
    wait_for(T, "the firmware files removed", || {
        s.firmware_dir_is_empty().then_some(())
    });
    assert!(
        s.csms.errors_sent().is_empty(),
        "{:?}",
        s.csms.errors_sent()
    );
    let log = s.agent.log();
    assert!(
        log.contains("installing"),
        "the install command's output is logged"
    );
    // L01.FR.25: a triggered status after Installed is Idle.
    let trigger = call_response(s.csms.admin(admin_call(
        "TriggerMessage",
        json!({"requestedMessage": "FirmwareStatusNotification"}),
    )));
    assert_eq!(trigger["status"], "Accepted");
    wait_for(T, "Idle", || {
        (s.statuses().last().unwrap()["status"] == "Idle").then_some(())
    });
}

#[test]
fn a_bad_signature_never_reaches_the_installer() {
    let Some(s) = setup(200_000, &[], "", "") else {
        return;
    };
    let mut other = s.image.clone();
    other[0] ^= 0xff;
    let signature = sign(&s, &other);
    assert_eq!(s.update(42, &signature)["status"], "Accepted");
    let statuses = s.wait_status("InvalidSignature");
    assert_eq!(
        names(&statuses),
        ["Downloading", "Downloaded", "InvalidSignature"]
    );
    wait_for(T, "InvalidFirmwareSignature security event", || {
        s.security_events()
            .contains(&"InvalidFirmwareSignature".to_string())
            .then_some(())
    });
    assert!(!s.agent.dir.path().join("installed.bin").exists());
    wait_for(T, "the firmware files removed", || {
        s.firmware_dir_is_empty().then_some(())
    });
    let _ = &s.manufacturer;
}

#[test]
fn a_server_that_keeps_failing_ends_in_download_failed() {
    // Every attempt (1 + 3 retries) gets a 503.
    let Some(s) = setup(10_000, &["--fail-first", "10"], "", "") else {
        return;
    };
    let signature = sign(&s, &s.image);
    assert_eq!(s.update(43, &signature)["status"], "Accepted");
    let statuses = s.wait_status("DownloadFailed");
    assert_eq!(
        names(&statuses),
        [
            "Downloading",
            "Downloading",
            "Downloading",
            "Downloading",
            "DownloadFailed"
        ]
    );
    assert_eq!(s.server.requests().len(), 4, "one request per attempt");
    assert!(s.agent.log().contains("HTTP 503"), "the reason is logged");
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    // The first transfer stops sending after 50,000 bytes and keeps the connection open.
    let Some(s) = setup(
        400_000,
        &["--stall-after", "50000"],
        "stall_timeout_s = 2",
        "",
    ) else {
        return;
    };
    let signature = sign(&s, &s.image);
    assert_eq!(s.update(44, &signature)["status"], "Accepted");
    let firmware = s.agent.status()["firmware"].clone();
    assert_eq!(
        firmware["request_id"], 44,
        "ctl status shows the update: {firmware}"
    );
    assert_eq!(firmware["phase"], "Downloading", "{firmware}");
    s.wait_status("Installed");
    assert_eq!(s.agent.status()["firmware"], Value::Null, "done");
    let requests = s.server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1]["range"], "bytes=50000-", "{requests:?}");
    assert!(
        s.agent.log().contains("no data for 2 s"),
        "the stall is named"
    );
    let installed = std::fs::read(s.agent.dir.path().join("installed.bin")).unwrap();
    assert!(installed == s.image);
}

#[test]
fn a_full_disk_fails_the_attempt_cleanly_and_the_retry_succeeds() {
    let Some(s) = setup(100_000, &[], "", "") else {
        return;
    };
    // The partial file of request 45 is /dev/full: every write fails with ENOSPC, as on a
    // full disk. The agent drops the partial file, so the retry (the "disk" has room again)
    // starts over and succeeds.
    let dir = s.agent.dir.path().join("firmware");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.join("45.part")).unwrap();
    let signature = sign(&s, &s.image);
    assert_eq!(s.update(45, &signature)["status"], "Accepted");
    let statuses = s.wait_status("Installed");
    assert_eq!(
        names(&statuses),
        [
            "Downloading",
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "Installed"
        ]
    );
    assert!(
        s.agent.log().contains("No space left on device"),
        "the cause is logged"
    );
    assert_eq!(
        s.agent.status()["connection"],
        "connected",
        "the agent kept working"
    );
    let installed = std::fs::read(s.agent.dir.path().join("installed.bin")).unwrap();
    assert!(installed == s.image);
}

#[test]
fn the_activation_restarts_into_the_new_firmware_which_reports_installed() {
    // The activation command stands in for "reboot into the other slot": it stops the agent
    // (SIGTERM to its parent); the test then starts the "new image" (firmware_version 2.0.0).
    let Some(mut s) = setup(
        50_000,
        &[],
        "",
        "activate_command = [\"/bin/sh\", \"-c\", \"kill -TERM $PPID\"]",
    ) else {
        return;
    };
    let signature = sign(&s, &s.image);
    assert_eq!(s.update(46, &signature)["status"], "Accepted");
    // L01.FR.15: InstallRebooting reaches the CSMS before the activation.
    s.wait_status("InstallRebooting");
    assert_eq!(s.agent.wait_exit(T), Some(0), "stopped by the activation");
    assert!(
        !names(&s.statuses()).contains(&"Installed"),
        "the old firmware does not claim Installed"
    );
    let config = std::fs::read_to_string(&s.agent.config).unwrap().replace(
        "serial_number = \"SN-0001\"",
        "serial_number = \"SN-0001\"\nfirmware_version = \"2.0.0\"",
    );
    std::fs::write(&s.agent.config, config).unwrap();
    s.agent.spawn(&[]);
    // L01.FR.32 (a): the new firmware reports Installed for the same request.
    let statuses = s.wait_status("Installed");
    assert_eq!(
        statuses.last().unwrap(),
        &json!({"status": "Installed", "requestId": 46})
    );
    let boots = s.csms.calls("BootNotification");
    let boot = &boots.last().unwrap()["payload"];
    assert_eq!(boot["chargingStation"]["firmwareVersion"], "2.0.0");
    assert_eq!(boot["reason"], "FirmwareUpdate");
    wait_for(T, "FirmwareUpdated security event", || {
        s.security_events()
            .contains(&"FirmwareUpdated".to_string())
            .then_some(())
    });
}

#[test]
fn an_image_over_ftp_is_resumed_with_rest() {
    let Some(s) = setup(600_000, &[], "", "") else {
        return;
    };
    let Some(ftp) = FtpServer::start(&s.pki.path().join("www")) else {
        return;
    };
    // What an earlier, cut attempt left: the first 250,000 bytes, and what identified the
    // file then (SIZE and MDTM, as the agent keeps them beside the partial file).
    let dir = s.agent.dir.path().join("firmware");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("47.part"), &s.image[..250_000]).unwrap();
    let mtime = std::fs::metadata(s.pki.path().join("www/image.bin"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (y, mo, d) = ocpp_agent::ocpp::clock::civil_from_days(mtime.div_euclid(86_400));
    let sod = mtime.rem_euclid(86_400);
    let mdtm = format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    std::fs::write(
        dir.join("47.validator"),
        format!("size={} mdtm={mdtm}", s.image.len()),
    )
    .unwrap();
    let signature = sign(&s, &s.image);
    let answer = s.update_from(47, &ftp.url("image.bin"), &signature);
    assert_eq!(answer["status"], "Accepted", "{answer}");
    s.wait_status("Installed");
    let installed = std::fs::read(s.agent.dir.path().join("installed.bin")).unwrap();
    assert!(
        installed == s.image,
        "the installed image is the served one, byte for byte"
    );
    let commands: Vec<String> = ftp
        .commands()
        .iter()
        .map(|c| format!("{} {}", c["cmd"].as_str().unwrap(), c["code"]))
        .collect();
    assert!(commands.contains(&"REST 350".to_string()), "{commands:?}");
    assert!(
        commands.contains(&"RETR 125".to_string()) || commands.contains(&"RETR 150".to_string()),
        "{commands:?}"
    );
    let rest = ftp
        .commands()
        .into_iter()
        .find(|c| c["cmd"] == "REST")
        .unwrap();
    assert_eq!(rest["arg"], "250000");
    assert!(
        !s.agent.log().contains(FtpServer::PASSWORD),
        "the password is not logged"
    );
}

#[test]
fn a_file_changed_between_attempts_is_downloaded_again_from_the_start() {
    let Some(s) = setup(1_000_000, &["--drop-after", "300000"], "", "") else {
        return;
    };
    let signature = sign(&s, &s.image);
    assert_eq!(s.update(48, &signature)["status"], "Accepted");
    // The first transfer is cut; before the retry (1 s later) the file on the server is
    // replaced (same bytes, new modification time: a new ETag).
    s.server.wait_requests(1, T);
    let path = s.pki.path().join("www/image.bin");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &s.image).unwrap();
    s.wait_status("Installed");
    let requests = s.server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    // RFC 9110 If-Range: the changed file comes whole (200), not as a 206 tail.
    assert_eq!(requests[1]["status"], 200, "{requests:?}");
    assert_eq!(requests[1]["bytes"], 1_000_000, "{requests:?}");
    let installed = std::fs::read(s.agent.dir.path().join("installed.bin")).unwrap();
    assert!(installed == s.image);
}
