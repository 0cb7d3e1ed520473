//! The input format of `station_frames`: one operation per line, the first character says which
//! (table below). Lines that mean nothing are skipped, numbers are clamped, so
//! every input is a valid scenario, and a crash input is a readable script.
//!
//! ```text
//! V3                     configuration variant 3 (first line only; default 0)
//! J3                     variant 3 in OCPP 1.6J (first line only; one connector per EVSE): the
//!                        CSMS speaks 1.6; S is RemoteStartTransaction (connectorId, idTag), X
//!                        RemoteStopTransaction with the id the CSMS gave that transaction, Q
//!                        an action 1.6 lacks (NotImplemented), F5 fails StartTransaction,
//!                        MeterValues and StopTransaction, A's statuses 1.6 lacks are Invalid
//! +120                   advance 120 s            m250   advance 250 ms
//! P1 1 / U2 2            plug in / unplug (EVSE, connector)
//! T1 TAG-A               idToken TAG-A (ISO14443) at EVSE 1; T1 {"idToken":..} raw IdTokenType
//! A4 TAG-A               the CSMS answers TAG-A with AUTH_STATUSES[4]
//! S1 7 TAG-A / S- 7 TAG-A  RequestStartTransaction on EVSE 1 / any EVSE, remoteStartId 7
//! X1 / X-                RequestStopTransaction for EVSE 1's transaction / an unknown id
//! Q1 / Q- / Q            GetTransactionStatus for EVSE 1's transaction / unknown id / no id
//! C                      ClearCache
//! >[2,"1","Reset",{}]    any frame, as the CSMS
//! <{"currentTime":..}    answer the station's unanswered CALL with this payload ("<" alone: a
//!                        valid one)
//! !InternalError         ... or with a CALLERROR
//! O0/O1 N0/N1 G0/G1      CSMS online / answering requests / answering pings
//! F05                    the CSMS fails STATION_ACTIONS[0] and [5] (F alone: none)
//! B1                     BootNotification answered with BOOT_STATUSES[1]
//! D                      the CSMS drops the connection
//! R0 / R1                power cycle, unclean / clean
//! ```

use crate::property::{AUTH_STATUSES, BOOT_STATUSES, Op, STATION_ACTIONS};
use serde_json::{Value, json};
use std::time::Duration;

/// Operations per input at most (keeps one execution fast).
pub const MAX_OPS: usize = 300;

/// A parsed input: the configuration variant, its protocol and the operations.
pub struct Script {
    pub variant: u64,
    /// `J` instead of `V`: OCPP 1.6J.
    pub v16: bool,
    pub ops: Vec<Op>,
}

/// Leading decimal number of `s` (after spaces), saturating, and the rest.
fn number(s: &str) -> (Option<u64>, &str) {
    let s = s.trim_start_matches(' ');
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return (None, s);
    }
    let n = s[..end].bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    (Some(n), &s[end..])
}

fn small(n: Option<u64>) -> u32 {
    n.unwrap_or(1).min(u64::from(u32::MAX)) as u32
}

fn word(s: &str) -> String {
    let w = s.trim();
    if w.is_empty() {
        "TAG-A".into()
    } else {
        w.into()
    }
}

fn flag(s: &str) -> bool {
    s.starts_with('1')
}

pub fn parse(data: &[u8]) -> Script {
    let text = String::from_utf8_lossy(data);
    let mut variant = 0;
    let mut v16 = false;
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if ops.len() >= MAX_OPS {
            break;
        }
        let mut chars = line.chars();
        let Some(c) = chars.next() else { continue };
        let rest = chars.as_str();
        let (n, after) = number(rest);
        let op = match c {
            'V' | 'J' if i == 0 => {
                variant = n.unwrap_or(0);
                v16 = c == 'J';
                continue;
            }
            '+' => Op::Advance(Duration::from_secs(n.unwrap_or(1).min(7200))),
            'm' => Op::Advance(Duration::from_millis(n.unwrap_or(1).min(60_000))),
            'P' | 'U' => {
                let (connector, _) = number(after);
                Op::Plug {
                    evse: small(n),
                    connector: small(connector),
                    plugged: c == 'P',
                }
            }
            'T' => {
                let arg = after.trim();
                let id_token = match serde_json::from_str::<Value>(arg) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"idToken": word(arg), "type": "ISO14443"}),
                };
                Op::Token {
                    evse: small(n),
                    id_token,
                }
            }
            'A' => Op::SetAuth {
                token: word(after),
                status: AUTH_STATUSES[n.unwrap_or(0) as usize % AUTH_STATUSES.len()],
            },
            'S' => {
                let (evse, after) = match n {
                    Some(e) => (Some(e.min(i64::MAX as u64) as i64), after),
                    None => (None, after.strip_prefix('-').unwrap_or(after)),
                };
                let (id, after) = number(after);
                Op::RemoteStart {
                    evse,
                    token: word(after),
                    remote_start_id: id.unwrap_or(1).min(i64::MAX as u64) as i64,
                }
            }
            'X' => Op::RemoteStop {
                evse: n.map(|e| small(Some(e))),
            },
            'Q' => Op::TxStatus {
                evse: n.map(|e| small(Some(e))),
                with_id: !rest.is_empty(),
            },
            'C' => Op::ClearCache,
            '>' => Op::Raw(rest.to_owned()),
            '<' => Op::LateResult(serde_json::from_str(rest).ok()),
            '!' => Op::LateError(rest.to_owned()),
            'O' => Op::Online(flag(rest)),
            'N' => Op::Answering(flag(rest)),
            'G' => Op::Pings(flag(rest)),
            'F' => Op::Failing(
                rest.bytes()
                    .filter(u8::is_ascii_digit)
                    .map(|d| STATION_ACTIONS[usize::from(d - b'0') % STATION_ACTIONS.len()])
                    .collect(),
            ),
            'B' => Op::BootStatus(BOOT_STATUSES[n.unwrap_or(0) as usize % BOOT_STATUSES.len()]),
            'D' => Op::Drop,
            'R' => Op::PowerCycle { clean: flag(rest) },
            _ => continue,
        };
        ops.push(op);
    }
    Script { variant, v16, ops }
}

/// Runs a script against a fresh station; panics (a crash for libFuzzer) on a broken invariant.
pub fn run(data: &[u8]) {
    let script = parse(data);
    let config = if script.v16 {
        crate::property::config16_for(script.variant)
    } else {
        crate::property::config_for(script.variant)
    };
    let mut d = crate::property::Driver::new(config, |_| {});
    for (i, op) in script.ops.iter().enumerate() {
        if let Err(e) = d.step(op) {
            panic!("invariant broken at operation {i} ({op:?}): {e}");
        }
    }
    if let Err(e) = d.finish() {
        panic!("invariant broken at the end (CSMS back, everything unplugged, drained): {e}");
    }
}
