//! `ctl watch`: JSON lines of what changes at a station, for the integrator's HMI.
//!
//! The view is cut into parts, each with a key (kind, EVSE, connector) and a JSON value taken
//! from the status snapshot and the display lists as `ctl status` and `ctl display` show them,
//! so a field added to a snapshot joins the stream without a change here. A subscriber gets
//! one `state` line with the whole view, then a line for each part whose value changed.
//!
//! Nothing of this exists while nobody watches: the station task holds an empty `Option`, and
//! builds, compares and sends views only for subscribers. Each subscriber has a bounded buffer;
//! one that falls [`BUFFER`] lines behind (a slow or stopped reader) gets a `dropped` line in
//! the last place and is let go, so the station never waits for a reader.

use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::info;

/// Lines a subscriber may fall behind before it is dropped.
pub const BUFFER: usize = 64;

/// Subscribers at once (each may hold [`BUFFER`] lines).
pub const MAX_SUBSCRIBERS: usize = 4;

/// Where a subscriber's lines go (each a JSON object, without the newline).
pub type Subscriber = mpsc::Sender<Arc<str>>;

/// Which part of the view a line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kind: &'static str,
    evse: Option<u64>,
    connector: Option<u64>,
}

/// The view cut into parts, in a stable order.
#[derive(Debug, Default, PartialEq)]
pub struct View {
    parts: Vec<(Key, Value)>,
    /// The whole, for a new subscriber's first line.
    whole: Value,
}

/// What the EVSE part leaves to parts of their own.
const EVSE_OWN_PARTS: [&str; 5] = [
    "connectors",
    "transaction",
    "charging_limit",
    "meter",
    "price",
];

impl View {
    /// The view of a station: `status` as `ctl status` shows it (a `StatusSnapshot`), `display`
    /// as `ctl display` does (a `DisplaySnapshot`).
    pub fn new(status: Value, display: Value) -> View {
        let mut parts = Vec::new();
        let key = |kind, evse: Option<u64>, connector: Option<u64>| Key {
            kind,
            evse,
            connector,
        };
        let station: Map<String, Value> = status
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| {
                        matches!(k.as_str(), "connection" | "registration" | "firmware")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        parts.push((key("station", None, None), Value::Object(station)));
        for evse in status["evses"].as_array().into_iter().flatten() {
            let id = evse["id"].as_u64();
            let own: Map<String, Value> = evse
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| !EVSE_OWN_PARTS.contains(&k.as_str()) && *k != "id")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            parts.push((key("evse", id, None), Value::Object(own)));
            for c in evse["connectors"].as_array().into_iter().flatten() {
                let mut c = c.clone();
                let cid = c.as_object_mut().and_then(|o| o.remove("id"));
                parts.push((key("connector", id, cid.and_then(|v| v.as_u64())), c));
            }
            parts.push((key("transaction", id, None), evse["transaction"].clone()));
            parts.push((key("limit", id, None), evse["charging_limit"].clone()));
            parts.push((key("meter", id, None), evse["meter"].clone()));
            parts.push((key("price", id, None), evse["price"].clone()));
        }
        for screen in display["screens"].as_array().into_iter().flatten() {
            let mut s = screen.clone();
            let evse = s.as_object_mut().and_then(|o| o.remove("evse"));
            parts.push((key("display", evse.and_then(|v| v.as_u64()), None), s));
        }
        View {
            parts,
            whole: json!({"status": status, "display": display}),
        }
    }

    /// The lines that take a reader of `self` to `new`.
    fn changes(&self, new: &View, head: &Head) -> Vec<Arc<str>> {
        new.parts
            .iter()
            .filter(|(key, value)| !self.parts.iter().any(|(k, v)| k == key && v == value))
            .map(|(key, value)| head.line(key, value))
            .collect()
    }
}

/// What every line starts with.
struct Head<'a> {
    ts: &'a str,
    station: &'a str,
}

impl Head<'_> {
    fn start(&self, kind: &str) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("ts".into(), json!(self.ts));
        line.insert("station".into(), json!(self.station));
        line.insert("kind".into(), json!(kind));
        line
    }

    /// A change line: the part's fields beside the head for the station, an EVSE and a
    /// connector; under the kind's name for the others (which can be null).
    fn line(&self, key: &Key, value: &Value) -> Arc<str> {
        let mut line = self.start(key.kind);
        if let Some(e) = key.evse {
            line.insert("evse".into(), json!(e));
        }
        if let Some(c) = key.connector {
            line.insert("connector".into(), json!(c));
        }
        match (key.kind, value) {
            ("station" | "evse" | "connector", Value::Object(fields)) => {
                for (k, v) in fields {
                    line.insert(k.clone(), v.clone());
                }
            }
            (kind, value) => {
                line.insert(kind.into(), value.clone());
            }
        }
        Value::Object(line).to_string().into()
    }

    fn state(&self, view: &View) -> Arc<str> {
        let mut line = self.start("state");
        line.insert("state".into(), view.whole.clone());
        Value::Object(line).to_string().into()
    }

    fn dropped(&self) -> Arc<str> {
        let mut line = self.start("dropped");
        line.insert(
            "reason".into(),
            json!(format!(
                "the reader fell {BUFFER} lines behind; watch again for the whole state"
            )),
        );
        Value::Object(line).to_string().into()
    }
}

/// The subscribers of a station and the view they last got.
#[derive(Debug)]
pub struct Watch {
    station: String,
    last: View,
    subscribers: Vec<Subscriber>,
}

impl Watch {
    pub fn new(station: &str, view: View) -> Watch {
        Watch {
            station: station.to_owned(),
            last: view,
            subscribers: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Adds a subscriber and sends it the whole view (`ts` is the station's UTC); refused when
    /// [`MAX_SUBSCRIBERS`] already watch.
    pub fn subscribe(&mut self, subscriber: Subscriber, ts: &str) -> Result<(), String> {
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(format!(
                "{MAX_SUBSCRIBERS} readers already watch this station"
            ));
        }
        let head = Head {
            ts,
            station: &self.station,
        };
        if subscriber.try_send(head.state(&self.last)).is_ok() {
            self.subscribers.push(subscriber);
        }
        Ok(())
    }

    /// Sends each subscriber what changed since the last view; drops those that are gone or
    /// too far behind.
    pub fn update(&mut self, view: View, ts: &str) {
        if view.parts == self.last.parts {
            return;
        }
        let head = Head {
            ts,
            station: &self.station,
        };
        let lines = self.last.changes(&view, &head);
        self.last = view;
        let dropped = head.dropped();
        let before = self.subscribers.len();
        self.subscribers.retain(|s| {
            for line in &lines {
                if s.capacity() <= 1 {
                    let _ = s.try_send(dropped.clone());
                    return false;
                }
                if s.try_send(line.clone()).is_err() {
                    return false;
                }
            }
            true
        });
        if self.subscribers.len() != before {
            info!(
                dropped = before - self.subscribers.len(),
                "watch readers let go (gone, or too slow)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(plugged: bool, tx: Option<Value>) -> Value {
        json!({
            "connection": "connected", "registration": "accepted", "utc": "x",
            "queue": {"depth": 0},
            "firmware": null,
            "evses": [{
                "id": 1, "power_path_closed": false, "authorized": false,
                "meter": {"energy_wh": 0.0, "power_w": 0.0},
                "transaction": tx, "last_authorization": null,
                "connectors": [{"id": 1, "status": if plugged {"Occupied"} else {"Available"}, "plugged": plugged}],
            }],
        })
    }

    fn display(items: Value) -> Value {
        json!({"screens": [{"evse": 0, "state": "Idle", "items": items}]})
    }

    fn lines(rx: &mut mpsc::Receiver<Arc<str>>) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(l) = rx.try_recv() {
            out.push(serde_json::from_str(&l).unwrap());
        }
        out
    }

    #[test]
    fn a_subscriber_gets_the_state_then_what_changed() {
        let mut w = Watch::new("CP1", View::new(status(false, None), display(json!([]))));
        let (tx, mut rx) = mpsc::channel(BUFFER);
        w.subscribe(tx, "t0").unwrap();
        let first = lines(&mut rx);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["kind"], "state");
        assert_eq!(first[0]["station"], "CP1");
        assert_eq!(first[0]["state"]["status"]["evses"][0]["id"], 1);
        // Nothing changed: nothing sent (the queue and utc are not watched).
        let mut same = status(false, None);
        same["utc"] = json!("y");
        same["queue"]["depth"] = json!(3);
        w.update(View::new(same, display(json!([]))), "t1");
        assert!(lines(&mut rx).is_empty());
        // A plug and a transaction (with a field the watch does not know of).
        let tx_value = json!({"id": "T1", "charging_state": "Charging", "cost": 1.5});
        w.update(
            View::new(
                status(true, Some(tx_value.clone())),
                display(json!([{"content": "hi"}])),
            ),
            "t2",
        );
        let changed = lines(&mut rx);
        let kinds: Vec<&str> = changed
            .iter()
            .map(|l| l["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["connector", "transaction", "display"]);
        assert_eq!(
            changed[0],
            json!({"ts": "t2", "station": "CP1", "kind": "connector", "evse": 1, "connector": 1,
                   "status": "Occupied", "plugged": true})
        );
        assert_eq!(changed[1]["transaction"], tx_value);
        assert_eq!(changed[1]["evse"], 1);
        assert_eq!(changed[2]["evse"], 0);
        assert_eq!(changed[2]["display"]["items"][0]["content"], "hi");
        // The transaction ends: null.
        w.update(
            View::new(status(true, None), display(json!([{"content": "hi"}]))),
            "t3",
        );
        let changed = lines(&mut rx);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["transaction"], Value::Null);
        // The driver's price changes: a part of its own.
        let mut priced = status(true, None);
        priced["evses"][0]["price"] = json!({"cost": 2.5, "cost_final": true, "currency": "EUR"});
        w.update(View::new(priced, display(json!([{"content": "hi"}]))), "t4");
        let changed = lines(&mut rx);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["kind"], "price");
        assert_eq!(changed[0]["price"]["cost"], 2.5);
    }

    #[test]
    fn a_slow_reader_is_dropped_with_a_last_line_and_a_gone_one_silently() {
        let mut w = Watch::new("CP1", View::new(status(false, None), display(json!([]))));
        let (slow, mut slow_rx) = mpsc::channel(BUFFER);
        let (gone, gone_rx) = mpsc::channel(BUFFER);
        w.subscribe(slow, "t").unwrap();
        w.subscribe(gone, "t").unwrap();
        drop(gone_rx);
        for n in 0..BUFFER {
            let plugged = n % 2 == 0;
            w.update(View::new(status(plugged, None), display(json!([]))), "t");
        }
        assert!(w.is_empty());
        let got = lines(&mut slow_rx);
        assert_eq!(got.len(), BUFFER);
        assert_eq!(got[0]["kind"], "state");
        assert_eq!(got.last().unwrap()["kind"], "dropped");
        assert!(got[..BUFFER - 1].iter().all(|l| l["kind"] != "dropped"));
    }

    #[test]
    fn subscribers_are_limited() {
        let mut w = Watch::new("CP1", View::new(status(false, None), display(json!([]))));
        let mut keep = Vec::new();
        for _ in 0..MAX_SUBSCRIBERS {
            let (tx, rx) = mpsc::channel(BUFFER);
            keep.push(rx);
            w.subscribe(tx, "t").unwrap();
        }
        let (tx, _rx) = mpsc::channel(BUFFER);
        assert!(w.subscribe(tx, "t").is_err());
    }
}
