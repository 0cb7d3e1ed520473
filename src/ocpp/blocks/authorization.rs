//! Authorization (C01-C15) and what it consults: the local authorization list (D, its own
//! block, kept here because only authorization reads it) and the authorization cache (C10-C12).
//! The transaction block asks it what the station knows of an idToken and tells it what the
//! CSMS answered; it decides nothing about transactions.

use super::local_list::LocalList;
use crate::ocpp::auth::{AuthCache, Lookup};
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::{AuthorizationInfo, IdToken};
use crate::ocpp::persist::Persisted;
use crate::ocpp::rpc::CallError;
use crate::ocpp::session::RequestKind;
use crate::ocpp::v201::{self, Action};
use serde_json::{Value, json};
use tracing::info;

/// The authorization block.
#[derive(Debug)]
pub struct Authorization {
    cache: AuthCache,
    local_list: LocalList,
}

impl Authorization {
    pub(crate) fn restore(persisted: &Persisted) -> Self {
        Authorization {
            cache: AuthCache::new(persisted.auth_cache.clone()),
            local_list: LocalList::restore(persisted),
        }
    }

    /// What the station knows of a token: the local authorization list first (C13/C14, D01),
    /// then the authorization cache (C10-C12).
    pub(crate) fn lookup(&mut self, cx: &mut Ctx, now: Instant, id_token: &IdToken) -> Lookup {
        let now_ms = cx.clock.utc(now).unix_millis();
        if let Some(list) = self.local_list.active(cx) {
            if let Some(info) = list.lookup(id_token) {
                let expired = info
                    .cache_expiry_date_time
                    .as_deref()
                    .and_then(UtcTime::parse_rfc3339)
                    .is_some_and(|t| t.unix_millis() <= now_ms);
                return if info.accepted() && !expired {
                    Lookup::Accepted {
                        group: info.group_id_token.clone(),
                    }
                } else {
                    Lookup::NotAccepted {
                        status: if expired {
                            "Expired".into()
                        } else {
                            info.status.as_str().into()
                        },
                    }
                };
            }
        }
        if !cx.vars.bool(Var::AuthCacheEnabled) {
            return Lookup::Unknown;
        }
        let (lookup, op) = self.cache.lookup(id_token, now_ms);
        if let Some(op) = op {
            cx.persist(vec![op]);
        }
        lookup
    }

    /// For a token the station knows as not Accepted: whether to ask the CSMS about it anyway
    /// (C10.FR.03, C12.FR.05, C14.FR.03), which the DisablePostAuthorize variables of the list
    /// and the cache turn off.
    pub(crate) fn may_post_authorize(&self, cx: &Ctx, id_token: &IdToken) -> bool {
        let listed = self
            .local_list
            .active(cx)
            .is_some_and(|list| list.lookup(id_token).is_some());
        let disabled = if listed {
            Var::LocalAuthListDisablePostAuthorize
        } else {
            Var::AuthCacheDisablePostAuthorize
        };
        !cx.vars.bool(disabled)
    }

    /// C16: whether a group is the Master Pass group (AuthCtrlr.MasterPassGroupId).
    pub(crate) fn is_master_pass(cx: &Ctx, group: Option<&IdToken>) -> bool {
        let master = cx.vars.get(Var::MasterPassGroupId);
        !master.is_empty() && group.is_some_and(|g| g.id_token == master)
    }

    /// The CSMS said this of a token (AuthorizeResponse, or the idTokenInfo of a
    /// TransactionEventResponse): the cache keeps it (C10.FR.04/05) with AuthCacheLifeTime.
    pub(crate) fn remember(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id_token: &IdToken,
        info: &AuthorizationInfo,
    ) {
        if !cx.vars.bool(Var::AuthCacheEnabled) {
            return;
        }
        let lifetime = cx.vars.seconds(Var::AuthCacheLifeTime).as_millis() as i64;
        let now_ms = cx.clock.utc(now).unix_millis();
        let ops = self.cache.update(id_token, info, now_ms, lifetime);
        cx.persist(ops);
    }

    /// D02: GetLocalListVersion.
    pub(crate) fn local_list_version(&self, cx: &Ctx) -> Value {
        self.local_list.version_answer(cx)
    }

    /// D01: SendLocalList.
    pub(crate) fn send_local_list(
        &mut self,
        cx: &mut Ctx,
        request: v201::SendLocalListRequest,
    ) -> Result<v201::SendLocalListResponse, CallError> {
        self.local_list.send_local_list(cx, request)
    }

    /// LocalAuthListCtrlr.Entries.
    pub(crate) fn local_list_entries(&self) -> usize {
        self.local_list.entries.len()
    }

    /// C11: ClearCache.
    pub(crate) fn clear_cache(&mut self, cx: &mut Ctx) -> Value {
        if !cx.vars.bool(Var::AuthCacheEnabled) {
            return json!({"status": "Rejected"});
        }
        let op = self.cache.clear();
        cx.persist(vec![op]);
        json!({"status": "Accepted"})
    }

    // ----- customer information (N09, N10) ----------------------------------------------------

    /// N09/N10: report and/or clear what the station keeps about a customer. The agent keeps
    /// idTokens only (authorization cache, local list, open transactions); it stores no
    /// customer certificates or identifiers.
    pub(crate) fn customer_information(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        sessions: &[(u32, IdToken)],
        request: v201::CustomerInformationRequest,
    ) -> Result<v201::CustomerInformationResponse, CallError> {
        use v201::CustomerInformationStatusEnum as S;
        let respond = |status| {
            Ok(v201::CustomerInformationResponse {
                custom_data: None,
                status,
                status_info: None,
            })
        };
        let references = [
            request.id_token.is_some(),
            request.customer_certificate.is_some(),
            request.customer_identifier.is_some(),
        ];
        // N09.FR.09: exactly one reference.
        if references.iter().filter(|r| **r).count() != 1 {
            return respond(S::Invalid);
        }
        // N09.FR.07 / N10.FR.07: nothing asked.
        if !request.report && !request.clear {
            return respond(S::Rejected);
        }
        let mut found: Vec<String> = Vec::new();
        if let Some(token) = &request.id_token {
            let token = IdToken::from(token);
            let key = token.key();
            if self.cache.contains(&key) {
                found.push(format!("authorization cache entry for {key}"));
                if request.clear {
                    // N10.FR.03/06: remove it (the local list is the CSMS's to change).
                    cx.persist(vec![self.cache.remove(&key)]);
                }
            }
            if self.local_list.lookup(&token).is_some() {
                found.push(format!("local authorization list entry for {key}"));
            }
            for (evse, session_token) in sessions {
                if session_token.key() == key {
                    found.push(format!("authorizes the session on EVSE {evse}"));
                }
            }
        }
        info!(
            request_id = request.request_id,
            items = found.len(),
            clear = request.clear,
            "customer information"
        );
        if request.report {
            // N09.FR.05/06: the data, or one message saying there is none.
            let text = if found.is_empty() {
                "No data found for this customer".to_owned()
            } else {
                found.join("; ")
            };
            let chunks: Vec<String> = text
                .chars()
                .collect::<Vec<_>>()
                .chunks(512)
                .map(|c| c.iter().collect())
                .collect();
            let generated_at = cx.clock.utc(now).to_rfc3339();
            for (seq, data) in chunks.iter().enumerate() {
                let mut payload = json!({
                    "data": data,
                    "seqNo": seq,
                    "generatedAt": generated_at,
                    "requestId": request.request_id,
                });
                if seq + 1 < chunks.len() {
                    payload["tbc"] = json!(true);
                }
                cx.enqueue(
                    RequestKind::Other(Action::NotifyCustomerInformation),
                    Action::NotifyCustomerInformation,
                    payload,
                );
            }
        }
        respond(S::Accepted)
    }
}
