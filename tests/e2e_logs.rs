//! Log upload end to end (N01): the real agent against the Python `ocpp` CSMS, uploading to
//! the independent `tests/csms/fileserver.py` over HTTPS. The security log is the agent's own
//! (`security.log`), the diagnostics log a configured command's output. Checks the bytes that
//! arrive, the LogStatusNotifications, the PUT fall-back, Basic auth from the URL, and a
//! refusal.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fileserver::{FileServer, FtpServer};
use support::pki::Ca;
use support::{Agent, Csms, admin_call, agent_config, call_response, wait_for};

const T: Duration = Duration::from_secs(60);

struct Setup {
    pki: tempfile::TempDir,
    server: FileServer,
    csms: Csms,
    agent: Agent,
}

/// An HTTPS upload server with `server_args` and the agent whose diagnostics command prints
/// two lines and the time window it was given.
fn setup(server_args: &[&str]) -> Option<Setup> {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "web");
    let web = ca.issue("web", "/O=Test/CN=localhost", Some("DNS:localhost"), None);
    let root = pki.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let server = FileServer::start(&root, Some((&web.cert, &web.key)), server_args)?;
    let csms = Csms::start(&[])?;
    let dir = tempfile::tempdir().unwrap();
    let text = agent_config(dir.path(), &csms.url(), "").replace(
        "[log]\nfilter = \"debug\"",
        "[log]\nfilter = \"debug\"\ndiagnostics_command = [\"/bin/sh\", \"-c\", \
         \"echo diagnostics line 1; echo diagnostics line 2; echo since=$OCPP_LOG_SINCE\"]",
    ) + &format!("\n[transfer]\nca_file = \"{}\"\n", ca.cert.display());
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    Some(Setup {
        pki,
        server,
        csms,
        agent,
    })
}

impl Setup {
    fn get_log(&self, request_id: i64, log_type: &str, location: &str, extra: Value) -> Value {
        let mut payload = json!({
            "requestId": request_id,
            "logType": log_type,
            "retries": 0,
            "log": {"remoteLocation": location},
        });
        if let Some(since) = extra.get("oldestTimestamp") {
            payload["log"]["oldestTimestamp"] = since.clone();
        }
        call_response(self.csms.admin(admin_call("GetLog", payload)))
    }

    fn wait_final(&self, request_id: i64) -> Vec<String> {
        wait_for(T, "the final LogStatusNotification", || {
            let statuses: Vec<String> = self
                .csms
                .calls("LogStatusNotification")
                .iter()
                .filter(|r| r["payload"]["requestId"] == request_id)
                .map(|r| r["payload"]["status"].as_str().unwrap().to_owned())
                .collect();
            statuses
                .last()
                .is_some_and(|s| s != "Uploading")
                .then_some(statuses)
        })
    }
}

#[test]
fn the_security_log_is_posted_with_its_file_name() {
    let Some(s) = setup(&[]) else {
        return;
    };
    let answer = s.get_log(1, "SecurityLog", &s.server.url("upload/"), json!({}));
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let filename = answer["filename"].as_str().unwrap().to_owned();
    assert_eq!(s.wait_final(1), ["Uploading", "Uploaded"]);
    // N01.FR.19: a multipart POST naming the file; the server saved the part under its name.
    let uploaded = s.server.uploaded(&filename).unwrap_or_else(|| {
        panic!(
            "{filename} not uploaded: {:?} {:?}",
            s.server.requests(),
            std::fs::read_dir(s.server.uploads())
                .unwrap()
                .collect::<Vec<_>>()
        )
    });
    let body = String::from_utf8(uploaded).unwrap();
    assert!(body.contains(" StartupOfTheDevice"), "{body}");
    let requests = s.server.requests();
    assert_eq!(requests[0]["method"], "POST", "{requests:?}");
    // The agent's own security log file is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.agent.dir.path().join("security.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        s.csms.errors_sent().is_empty(),
        "{:?}",
        s.csms.errors_sent()
    );
}

#[test]
fn the_diagnostics_log_falls_back_to_put_and_uses_basic_auth_from_the_url() {
    let Some(s) = setup(&["--no-post", "--basic-auth", "uploader:s3cret:pw"]) else {
        return;
    };
    let url = s
        .server
        .url("diag.log")
        .replace("https://", "https://uploader:s3cret%3Apw@");
    let answer = s.get_log(
        2,
        "DiagnosticsLog",
        &url,
        json!({"oldestTimestamp": "2026-01-02T03:04:05Z"}),
    );
    assert_eq!(answer["status"], "Accepted", "{answer}");
    assert_eq!(s.wait_final(2), ["Uploading", "Uploaded"]);
    let body = String::from_utf8(s.server.uploaded("diag.log").expect("uploaded")).unwrap();
    assert_eq!(
        body,
        "diagnostics line 1\ndiagnostics line 2\nsince=2026-01-02T03:04:05.000Z\n"
    );
    let methods: Vec<String> = s
        .server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r["method"], r["status"]))
        .collect();
    assert_eq!(methods, ["\"POST\" 405", "\"PUT\" 201"]);
    assert!(
        !s.agent.log().contains("s3cret"),
        "credentials are not logged"
    );

    // A wrong password: PermissionDenied, not retried.
    let wrong = s
        .server
        .url("diag.log")
        .replace("https://", "https://uploader:nope@");
    s.get_log(3, "DiagnosticsLog", &wrong, json!({}));
    assert_eq!(s.wait_final(3), ["Uploading", "PermissionDenied"]);
}

#[test]
fn a_refusing_server_is_reported_as_bad_message() {
    let Some(s) = setup(&["--upload-status", "400"]) else {
        return;
    };
    s.get_log(4, "SecurityLog", &s.server.url("upload/x.log"), json!({}));
    assert_eq!(s.wait_final(4), ["Uploading", "BadMessage"]);
    // Nothing is left behind in the agent's state directory.
    wait_for(T, "the gathered file removed", || {
        std::fs::read_dir(s.agent.dir.path().join("logs"))
            .map_or(true, |mut d| d.next().is_none())
            .then_some(())
    });
}

#[test]
fn the_security_log_goes_to_an_ftp_directory() {
    let Some(s) = setup(&[]) else {
        return;
    };
    let root = s.pki.path().join("ftp");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let Some(ftp) = FtpServer::start(&root) else {
        return;
    };
    let answer = s.get_log(5, "SecurityLog", &ftp.url("logs/"), json!({}));
    let filename = answer["filename"].as_str().unwrap().to_owned();
    assert_eq!(s.wait_final(5), ["Uploading", "Uploaded"]);
    // A location naming a directory gets the file name of the answer.
    let body = std::fs::read_to_string(root.join("logs").join(&filename)).unwrap();
    assert!(body.contains(" StartupOfTheDevice"), "{body}");
    // A wrong password: 530, PermissionDenied, no retry.
    let wrong = ftp.url("logs/").replace(FtpServer::PASSWORD, "wrong");
    s.get_log(6, "SecurityLog", &wrong, json!({}));
    assert_eq!(s.wait_final(6), ["Uploading", "PermissionDenied"]);
}
