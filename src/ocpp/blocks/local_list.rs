//! The local authorization list (D01/D02): a version and the entries the CSMS sent, durable in
//! the journal; looked up by the authorization rules (C13, C14).

use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::{AuthorizationInfo, IdToken};
use crate::ocpp::persist::{PersistOp, Persisted};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v201;
use serde_json::{Value, json};
use tracing::{info, warn};

const META_LOCAL_LIST: &str = "local_list";

/// The local authorization list (D01): a version and the entries the CSMS sent.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalList {
    pub version: i64,
    pub entries: Vec<LocalEntry>,
}

/// One entry: a token and, for the entries the list keeps, what it says of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalEntry {
    pub id_token: IdToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_info: Option<AuthorizationInfo>,
}

impl LocalList {
    /// Start-up: the list the journal holds.
    pub(crate) fn restore(persisted: &Persisted) -> Self {
        match persisted.meta(META_LOCAL_LIST).map(serde_json::from_str) {
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                warn!(error = %e, "unreadable local authorization list in the journal; empty");
                LocalList::default()
            }
            None => LocalList::default(),
        }
    }

    /// The idTokenInfo of an idToken on the list.
    pub fn lookup(&self, id_token: &IdToken) -> Option<&AuthorizationInfo> {
        self.entries
            .iter()
            .find(|e| e.id_token.same(id_token))
            .and_then(|e| e.id_token_info.as_ref())
    }

    /// LocalAuthListCtrlr.Enabled.
    pub(crate) fn enabled(cx: &Ctx) -> bool {
        cx.vars.bool(Var::LocalAuthListEnabled)
    }

    /// The list when it is enabled (C13/C14 consult only an enabled list).
    pub(crate) fn active(&self, cx: &Ctx) -> Option<&LocalList> {
        LocalList::enabled(cx).then_some(self)
    }

    /// D02: GetLocalListVersion.
    pub(crate) fn version_answer(&self, cx: &Ctx) -> Value {
        // D02.FR.03: 0 when the list is disabled.
        let version = if LocalList::enabled(cx) {
            self.version
        } else {
            0
        };
        json!({ "versionNumber": version })
    }

    /// D01: SendLocalList.
    pub(crate) fn send_local_list(
        &mut self,
        cx: &mut Ctx,
        request: v201::SendLocalListRequest,
    ) -> Result<v201::SendLocalListResponse, CallError> {
        let respond = |status| {
            Ok(v201::SendLocalListResponse {
                custom_data: None,
                status,
                status_info: None,
            })
        };
        if !LocalList::enabled(cx) {
            return respond(v201::SendLocalListStatusEnum::Failed);
        }
        // D01.FR.18: versionNumber is above 0; 0 means "no list" to GetLocalListVersion
        // (D02.FR.02), so accepting it would make the list we hold invisible.
        if request.version_number <= 0 {
            warn!(
                version = request.version_number,
                "SendLocalList refused: versionNumber must be above 0 (D01.FR.18)"
            );
            return Ok(v201::SendLocalListResponse {
                custom_data: None,
                status: v201::SendLocalListStatusEnum::Failed,
                status_info: Some(v201::StatusInfo {
                    custom_data: None,
                    reason_code: "InvalidValue".into(),
                    additional_info: Some("versionNumber must be greater than 0".into()),
                }),
            });
        }
        let entries: Vec<LocalEntry> = request
            .local_authorization_list
            .unwrap_or_default()
            .iter()
            .map(|e| LocalEntry {
                id_token: IdToken::from(&e.id_token),
                id_token_info: e.id_token_info.as_ref().map(v201::authorization_info),
            })
            .collect();
        // D01.FR.06: unique idTokens.
        for (i, e) in entries.iter().enumerate() {
            if entries[..i].iter().any(|o| o.id_token == e.id_token) {
                return respond(v201::SendLocalListStatusEnum::Failed);
            }
        }
        match request.update_type {
            v201::UpdateEnum::Full => {
                // D01.FR.04/15: replace (or clear).
                self.entries = entries;
            }
            v201::UpdateEnum::Differential => {
                // D01.FR.19: a version not above ours is refused.
                if request.version_number <= self.version {
                    return respond(v201::SendLocalListStatusEnum::VersionMismatch);
                }
                for e in entries {
                    self.entries.retain(|o| o.id_token != e.id_token);
                    // D01.FR.16/17: with idTokenInfo: add/update; without: remove.
                    if e.id_token_info.is_some() {
                        self.entries.push(e);
                    }
                }
            }
        }
        self.version = request.version_number;
        info!(
            version = self.version,
            entries = self.entries.len(),
            "local authorization list updated"
        );
        cx.persist(vec![PersistOp::meta_json(META_LOCAL_LIST, Some(&*self))]);
        respond(v201::SendLocalListStatusEnum::Accepted)
    }
}
