//! Data subject rights, as use cases the privacy function (and the operator
//! CLI's restore drill) call: contact fields handed over by the tenant, the
//! requests' lifecycle, and each right's effect (docs/decisions/0016).
//!
//! Every step is idempotent and resumable: a request interrupted (a fault, the
//! time budget) stays `in_progress` and the next run, or the scheduled resume,
//! continues it from what is stored. Audit entries name the request, never the
//! person (no user id, lookup key or pseudonym).

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::draft;
use crate::adapters::dynamo::privacy::{Closing, Opening, StoredRequest};
use crate::adapters::dynamo::rights::{Pass, Work};
use crate::adapters::dynamo::subjects::{SealedBlob, SubjectRecord};
use crate::adapters::dynamo::{PrivacyTable, RightsTables, SubjectTable};
use crate::adapters::kms::ContactKeys;
use crate::adapters::s3::DataBucket;
use crate::crypto::{open, seal, sealing_context, CryptoError, SubjectLookup};
use crate::domain::privacy::{
    due_date, new_request_id, next_state, suppression_marker, withheld, Contact, Directive,
    Outcome, Receipt, RequestSpec, RequestState, RequestType, SealedFields,
};
use crate::domain::retention::{BUNDLE_LINK, PRIVACY_BUNDLE_RETENTION};
use crate::domain::subject::SubjectState;
use crate::domain::{EventData, SubjectId, TenantId};
use crate::http::ApiError;
use crate::keys;
use crate::ports::{AuditLog, StoreError};

/// What the rights read and write.
pub struct Rights<A> {
    pub subjects: SubjectTable,
    pub requests: PrivacyTable,
    pub effects: RightsTables,
    pub bucket: DataBucket,
    pub contact_keys: ContactKeys,
    pub audit: A,
    /// None in the operator CLI: only the ingest and privacy functions may turn
    /// user ids into lookup keys (the HMAC key's policy).
    pub lookup: Option<SubjectLookup>,
}

/// Who acts, in which API request.
pub struct Actor<'a> {
    pub tenant: &'a TenantId,
    pub key_id: &'a str,
    pub request_id: &'a str,
}

/// KMS throttled or unavailable: 503 with Retry-After; anything else: 500.
fn crypto(error: CryptoError) -> ApiError {
    match error {
        CryptoError::DataKeyUnavailable(detail) => ApiError::Unavailable(StoreError::failed(
            "kms",
            crate::ports::FailureKind::Retryable,
            detail,
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

impl<A: AuditLog> Rights<A> {
    fn lookup(&self) -> Result<&SubjectLookup, ApiError> {
        self.lookup
            .as_ref()
            .ok_or_else(|| ApiError::Internal("no subject lookup secret here".into()))
    }

    /// The sealed fields of a record, opened (empty if none).
    pub async fn open_fields(
        &self,
        tenant: &TenantId,
        record: &SubjectRecord,
    ) -> Result<SealedFields, ApiError> {
        let Some(sealed) = &record.sealed else {
            return Ok(SealedFields::default());
        };
        let key = self
            .contact_keys
            .unwrap(tenant, &record.subject, &sealed.wrapped_key)
            .await
            .map_err(crypto)?;
        let plain = open(
            &key,
            &sealing_context(tenant, &record.subject),
            &sealed.nonce,
            &sealed.ciphertext,
        )
        .map_err(crypto)?;
        serde_json::from_slice(&plain)
            .map_err(|_| ApiError::Internal("sealed fields are not readable".into()))
    }

    /// Seals the fields under a fresh data key and stores them.
    async fn store_fields(
        &self,
        tenant: &TenantId,
        record: &SubjectRecord,
        fields: &SealedFields,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let (key, wrapped_key) = self
            .contact_keys
            .generate(tenant, &record.subject)
            .await
            .map_err(crypto)?;
        let plain = serde_json::to_vec(fields).unwrap_or_default();
        let (nonce, ciphertext) =
            seal(&key, &sealing_context(tenant, &record.subject), &plain).map_err(crypto)?;
        let blob = SealedBlob {
            nonce,
            ciphertext,
            wrapped_key,
        };
        if !self
            .subjects
            .put_sealed(tenant, &record.lookup, &blob, now)
            .await?
        {
            return Err(ApiError::NotFound("no such subject"));
        }
        Ok(())
    }

    /// `PUT /v1/subjects/{user}`: the person's contact fields (absent ones are
    /// cleared). Returns whether the subject was new and which fields changed.
    pub async fn put_subject(
        &self,
        actor: &Actor<'_>,
        user: &str,
        contact: Contact,
        now: OffsetDateTime,
    ) -> Result<(bool, Vec<&'static str>), ApiError> {
        let tenant = actor.tenant;
        let keys = self.lookup()?.lookup_keys(tenant, user);
        let (record, created) = self.subjects.ensure(tenant, &keys).await?;
        if record.state.erased_at.is_some() {
            return Err(ApiError::Conflict("the subject is being erased"));
        }
        let mut fields = self.open_fields(tenant, &record).await?;
        let before = fields.contact.clone().unwrap_or_default();
        let changed = [
            ("email", before.email != contact.email),
            ("name", before.name != contact.name),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        fields.contact = Some(contact);
        self.store_fields(tenant, &record, &fields, now).await?;
        let outcome = if created { "created" } else { "updated" };
        self.audit
            .append(
                tenant,
                draft(actor.key_id, "subject.put", None, actor.request_id, outcome),
                now,
            )
            .await?;
        Ok((created, changed))
    }

    /// `POST /v1/privacy/requests`: receives the request, then works on it until
    /// done or until `deadline` (the rest is resumed later).
    pub async fn submit(
        &self,
        actor: &Actor<'_>,
        spec: RequestSpec,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<StoredRequest, ApiError> {
        let tenant = actor.tenant;
        let keys = self.lookup()?.lookup_keys(tenant, &spec.user);
        let Some(record) = self.subjects.find(tenant, &keys).await? else {
            return Err(ApiError::NotFound("no such subject"));
        };
        if record.state.erased_at.is_some() {
            return Err(ApiError::Conflict("the subject is being erased"));
        }
        let request = StoredRequest {
            id: new_request_id(now),
            kind: spec.kind,
            state: RequestState::Received,
            purpose: spec.purpose,
            directive: spec.directive,
            received_at: now,
            due_at: due_date(now),
            updated_at: now,
            completed_at: None,
            reason: None,
            subject: Some(record.subject.clone()),
            lookup: Some(record.lookup.clone()),
            events_done: 0,
            receipt: None,
            bundle: Vec::new(),
        };
        if self.requests.open(tenant, &request).await? == Opening::AlreadyOpen {
            return Err(ApiError::Conflict(
                "a request of this type is already open for this subject",
            ));
        }
        self.audit_step(actor, &request, "received", now).await?;
        // Received and recorded: from here a failure leaves it open for the
        // scheduled resume (202), never lost.
        if let Err(error) = self
            .process(actor, &request, Some(&spec), deadline, now)
            .await
        {
            tracing::warn!(
                request = %request.id,
                code = error.code(),
                detail = ?error.detail(),
                "privacy request left open after a failure; the resume continues it"
            );
        }
        Ok(self
            .requests
            .get(tenant, &request.id)
            .await?
            .unwrap_or(request))
    }

    /// Works on an open request until it is closed or `deadline` passes.
    /// `spec` carries the values a rectification or a directive brings; a
    /// resumed one without them is rejected (they are never stored in clear).
    pub async fn process(
        &self,
        actor: &Actor<'_>,
        request: &StoredRequest,
        spec: Option<&RequestSpec>,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let tenant = actor.tenant;
        if !request.state.is_open() || !self.requests.start(tenant, &request.id, now).await? {
            return Ok(());
        }
        let (Some(subject), Some(lookup)) = (&request.subject, &request.lookup) else {
            return self
                .reject(
                    actor,
                    request,
                    "the request no longer names its subject",
                    now,
                )
                .await;
        };
        let record = self.subjects.get_record(tenant, lookup).await?;
        let outcome = match request.kind {
            RequestType::Access | RequestType::Portability => {
                let Some(record) = record else {
                    return self
                        .reject(actor, request, "the subject no longer exists", now)
                        .await;
                };
                self.bundle(tenant, request, &record, now).await?
            }
            RequestType::Rectification => {
                let (Some(record), Some(change)) = (record, spec.and_then(|s| s.fields.as_ref()))
                else {
                    return self
                        .reject(
                            actor,
                            request,
                            "interrupted before the new values were stored: submit it again",
                            now,
                        )
                        .await;
                };
                let mut fields = self.open_fields(tenant, &record).await?;
                let (contact, changed) =
                    fields.contact.clone().unwrap_or_default().rectified(change);
                fields.contact = Some(contact);
                self.store_fields(tenant, &record, &fields, now).await?;
                Outcome {
                    fields_changed: changed.into_iter().map(str::to_owned).collect(),
                    ..Outcome::default()
                }
            }
            RequestType::Erasure => {
                match self
                    .erase(tenant, request, subject, lookup, deadline, now)
                    .await?
                {
                    Some(outcome) => outcome,
                    None => return Ok(()),
                }
            }
            RequestType::Restriction
            | RequestType::RestrictionLift
            | RequestType::Objection
            | RequestType::ObjectionWithdrawal => {
                let Some(record) = record else {
                    return self
                        .reject(actor, request, "the subject no longer exists", now)
                        .await;
                };
                let probe = RequestSpec {
                    kind: request.kind,
                    user: String::new(),
                    purpose: request.purpose,
                    fields: None,
                    directive: None,
                    recipient: None,
                };
                let state = next_state(&record.state, &probe).unwrap_or(record.state.clone());
                if state != record.state {
                    self.subjects.set_state(tenant, lookup, &state, now).await?;
                }
                let purposes = withheld(&state);
                let pass = self
                    .effects
                    .withhold(
                        tenant,
                        Work::Request(&request.id),
                        subject,
                        &purposes,
                        deadline,
                        now,
                    )
                    .await?;
                if pass == Pass::OutOfTime {
                    return Ok(());
                }
                let done = self.events_done(tenant, &request.id).await?;
                Outcome {
                    events: Some(done),
                    withheld_from: Some(purposes.iter().map(|p| p.as_str().to_owned()).collect()),
                    ..Outcome::default()
                }
            }
            RequestType::PostMortemDirective => {
                let (Some(record), Some(directive)) = (record, spec.and_then(|s| s.directive))
                else {
                    return self
                        .reject(
                            actor,
                            request,
                            "interrupted before the directive was stored: submit it again",
                            now,
                        )
                        .await;
                };
                let mut fields = self.open_fields(tenant, &record).await?;
                let recipient = spec.and_then(|s| s.recipient.clone());
                if fields.recipient != recipient {
                    fields.recipient = recipient;
                    self.store_fields(tenant, &record, &fields, now).await?;
                }
                self.subjects
                    .set_directive(tenant, lookup, directive, now)
                    .await?;
                Outcome {
                    directive: Some(directive.as_str().to_owned()),
                    ..Outcome::default()
                }
            }
            RequestType::DeathNotice => {
                let directive = record.as_ref().and_then(|r| r.directive);
                if let Some(record) = &record {
                    self.subjects
                        .set_deceased(tenant, &record.lookup, now)
                        .await?;
                }
                match directive {
                    Some(Directive::Erase) => {
                        match self
                            .erase(tenant, request, subject, lookup, deadline, now)
                            .await?
                        {
                            Some(mut outcome) => {
                                outcome.directive = Some("erase".into());
                                outcome
                            }
                            None => return Ok(()),
                        }
                    }
                    Some(Directive::HandOver) => {
                        // Read again: the bundle shows the recorded death.
                        let record = self.subjects.get_record(tenant, lookup).await?;
                        let Some(record) = record else {
                            return self
                                .reject(actor, request, "the subject no longer exists", now)
                                .await;
                        };
                        let mut outcome = self.bundle(tenant, request, &record, now).await?;
                        outcome.directive = Some("hand_over".into());
                        outcome
                    }
                    Some(Directive::Keep) | None => Outcome {
                        directive: Some(directive.map_or("none", Directive::as_str).to_owned()),
                        ..Outcome::default()
                    },
                }
            }
        };
        let erased = request.kind == RequestType::Erasure
            || (request.kind == RequestType::DeathNotice
                && outcome.directive.as_deref() == Some("erase"));
        self.complete(actor, request, outcome, erased, now).await
    }

    /// The audit entry of a step of a request: `privacy.<type>`, by request id only.
    async fn audit_step(
        &self,
        actor: &Actor<'_>,
        request: &StoredRequest,
        outcome: &str,
        now: OffsetDateTime,
    ) -> Result<crate::domain::audit::AuditEntry, StoreError> {
        let action = format!("privacy.{}", request.kind.as_str());
        let entry = draft(
            actor.key_id,
            &action,
            Some(&request.id),
            actor.request_id,
            outcome,
        );
        self.audit.append(actor.tenant, entry, now).await
    }

    async fn events_done(&self, tenant: &TenantId, id: &str) -> Result<u64, StoreError> {
        Ok(self
            .requests
            .get(tenant, id)
            .await?
            .map_or(0, |r| r.events_done))
    }

    async fn complete(
        &self,
        actor: &Actor<'_>,
        request: &StoredRequest,
        outcome: Outcome,
        forget_subject: bool,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let entry = self.audit_step(actor, request, "completed", now).await?;
        let receipt = Receipt::new(
            &request.id,
            request.kind,
            &rfc3339(request.received_at),
            &rfc3339(now),
            outcome,
            entry.seq,
            &entry.hash,
        );
        self.requests
            .close(
                actor.tenant,
                request,
                Closing::Completed(&receipt),
                forget_subject,
                now,
            )
            .await?;
        Ok(())
    }

    async fn reject(
        &self,
        actor: &Actor<'_>,
        request: &StoredRequest,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        self.audit_step(actor, request, "rejected", now).await?;
        self.requests
            .close(actor.tenant, request, Closing::Rejected(reason), false, now)
            .await?;
        Ok(())
    }

    /// Erasure, in resumable steps (None: out of time, to be continued):
    /// the record is marked erased (ingestion then withholds everything), the
    /// events go with their rollup contributions, then the bundles, the
    /// subject's mentions in other requests, and the record itself; a
    /// suppression marker stays for a restore to re-apply.
    async fn erase(
        &self,
        tenant: &TenantId,
        request: &StoredRequest,
        subject: &SubjectId,
        lookup: &str,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<Option<Outcome>, ApiError> {
        if let Some(record) = self.subjects.get_record(tenant, lookup).await? {
            if record.state.erased_at.is_none() {
                let state = SubjectState {
                    erased_at: Some(now),
                    ..record.state.clone()
                };
                self.subjects.set_state(tenant, lookup, &state, now).await?;
            }
        }
        let pass = self
            .effects
            .erase_events(tenant, &request.id, subject, deadline, now)
            .await?;
        if pass == Pass::OutOfTime {
            return Ok(None);
        }
        let mut objects = 0;
        for other in self.requests.subject_requests(tenant, subject).await? {
            objects += self
                .bucket
                .delete_all_versions(&keys::bundle_prefix(tenant, &other.id))
                .await?;
        }
        self.requests
            .forget_subject(tenant, subject, &request.id)
            .await?;
        self.requests
            .put_marker(tenant, &suppression_marker(lookup), &request.id, now)
            .await?;
        self.subjects.delete(tenant, lookup).await?;
        Ok(Some(Outcome {
            events: Some(self.events_done(tenant, &request.id).await?),
            objects: Some(objects),
            suppression_marker_kept: Some(true),
            ..Outcome::default()
        }))
    }

    /// Writes the bundle of everything vigil holds about the subject: the
    /// record (contact fields opened), state, events, what is derived from
    /// them, and the requests; as JSON and CSV.
    async fn bundle(
        &self,
        tenant: &TenantId,
        request: &StoredRequest,
        record: &SubjectRecord,
        now: OffsetDateTime,
    ) -> Result<Outcome, ApiError> {
        let fields = self.open_fields(tenant, record).await?;
        let events = self
            .effects
            .events
            .subject_event_records(tenant, &record.subject, now)
            .await?;
        let requests = self
            .requests
            .subject_requests(tenant, &record.subject)
            .await?;
        let mut account_hours = BTreeSet::new();
        let event_rows: Vec<Value> = events
            .iter()
            .map(|r| {
                let e = &r.event;
                if e.counted() {
                    account_hours.insert((e.account.as_str().to_owned(), e.hour().label()));
                }
                json!({
                    "id": e.id.as_str(),
                    "account": e.account.as_str(),
                    "time": rfc3339(e.time),
                    "source": e.data.source().as_str(),
                    "data": event_data(&e.data),
                    "withheld_from": e.withheld.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let document = json!({
            "format": "vigil/subject-bundle/v1",
            "request_id": request.id,
            "type": request.kind.as_str(),
            "generated_at": rfc3339(now),
            "controller_note": "Personal data the tenant's vigil account holds about one person (GDPR Art. 15 and 20).",
            "subject": {
                "pseudonym": record.subject.as_str(),
                "created_at": record.created_at.map(rfc3339),
                "contact": fields.contact,
                "post_mortem_directive": record.directive.map(Directive::as_str),
                "post_mortem_recipient": fields.recipient,
                "deceased_at": record.deceased_at.map(rfc3339),
                "restricted": record.state.restricted,
                "objections": record.state.objections.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            },
            "events": event_rows,
            "derived": {
                "note": "Dashboard figures are per account, never per person; the person's events count in these account-hours (and their days and months). Alerts and exports do not name the person.",
                "account_hours": account_hours.iter().map(|(a, h)| json!({"account": a, "hour": h})).collect::<Vec<_>>(),
            },
            "alerts": [],
            "requests": requests.iter().map(|r| json!({
                "request_id": r.id,
                "type": r.kind.as_str(),
                "state": r.state.as_str(),
                "received_at": rfc3339(r.received_at),
                "completed_at": r.completed_at.map(rfc3339),
            })).collect::<Vec<_>>(),
        });
        let json_bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
        let csv_bytes = events_csv(&events.iter().map(|r| &r.event).collect::<Vec<_>>());
        let prefix = keys::bundle_prefix(tenant, &request.id);
        let files = [
            ("subject.json", "application/json", json_bytes),
            ("events.csv", "text/csv", csv_bytes),
        ];
        let mut written = Vec::new();
        let mut digests = Vec::new();
        for (name, content_type, body) in files {
            digests.push((name.to_owned(), hex::encode(Sha256::digest(&body))));
            let key = format!("{prefix}{name}");
            self.bucket.put(&key, content_type, body).await?;
            written.push(key);
        }
        self.requests
            .set_bundle(tenant, &request.id, &written)
            .await?;
        Ok(Outcome {
            events: Some(events.len() as u64),
            objects: Some(written.len() as u64),
            digests,
            ..Outcome::default()
        })
    }

    /// Presigned links to a completed request's bundle, while it is kept.
    pub async fn links(
        &self,
        request: &StoredRequest,
        now: OffsetDateTime,
    ) -> Result<Option<(Vec<(String, String)>, OffsetDateTime)>, StoreError> {
        let kept = request
            .completed_at
            .is_some_and(|at| at + PRIVACY_BUNDLE_RETENTION > now);
        if request.bundle.is_empty() || !kept {
            return Ok(None);
        }
        let mut links = Vec::new();
        for key in &request.bundle {
            let name = key.rsplit('/').next().unwrap_or(key).to_owned();
            let ttl = std::time::Duration::from_secs(BUNDLE_LINK.whole_seconds().unsigned_abs());
            links.push((name, self.bucket.link(key, ttl).await?));
        }
        Ok(Some((links, now + BUNDLE_LINK)))
    }

    /// Continues every open request of the tenant (the scheduled resume).
    /// Returns (continued, still open).
    pub async fn resume(
        &self,
        actor: &Actor<'_>,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<(usize, usize), ApiError> {
        let open = self.requests.open_requests(actor.tenant).await?;
        let mut still_open = 0;
        for request in &open {
            if Instant::now() >= deadline {
                still_open += 1;
                continue;
            }
            self.process(actor, request, None, deadline, now).await?;
            if let Some(after) = self.requests.get(actor.tenant, &request.id).await? {
                if after.state.is_open() {
                    still_open += 1;
                }
            }
        }
        Ok((open.len(), still_open))
    }

    /// Passes again over every subject whose restriction or objections changed
    /// since `since`: an event ingested at the very moment of the change, with
    /// the state read just before it, is withheld (or counted) as the state now
    /// says. Returns the subjects re-checked.
    pub async fn recheck(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<usize, ApiError> {
        let changed = self.subjects.changed_since(tenant, since).await?;
        let mut checked = 0;
        for (subject, state) in changed {
            // An erasure in progress deals with its subject's events itself.
            if state.erased_at.is_some() || Instant::now() >= deadline {
                continue;
            }
            self.effects
                .withhold(
                    tenant,
                    Work::Recheck,
                    &subject,
                    &withheld(&state),
                    deadline,
                    now,
                )
                .await?;
            checked += 1;
        }
        Ok(checked)
    }

    /// The restore drill: after a table is restored from a backup, erases again
    /// every subject whose suppression marker says it was erased after the
    /// record was created. Returns the number of records erased again.
    pub async fn reapply_erasures(
        &self,
        actor: &Actor<'_>,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<usize, ApiError> {
        let tenant = actor.tenant;
        let markers: std::collections::HashMap<String, OffsetDateTime> = self
            .requests
            .markers(tenant, now)
            .await?
            .into_iter()
            .collect();
        let mut erased = 0;
        for (lookup, subject, created_at) in self.subjects.all_records(tenant).await? {
            let Some(erased_at) = markers.get(&suppression_marker(&lookup)) else {
                continue;
            };
            // A record created after the erasure is a new relationship: left alone.
            if created_at.is_some_and(|c| c > *erased_at) {
                continue;
            }
            let request = StoredRequest {
                id: new_request_id(now),
                kind: RequestType::Erasure,
                state: RequestState::Received,
                purpose: None,
                directive: None,
                received_at: now,
                due_at: due_date(now),
                updated_at: now,
                completed_at: None,
                reason: None,
                subject: Some(subject),
                lookup: Some(lookup),
                events_done: 0,
                receipt: None,
                bundle: Vec::new(),
            };
            if self.requests.open(tenant, &request).await? == Opening::Opened {
                self.process(actor, &request, None, deadline, now).await?;
                erased += 1;
            }
        }
        Ok(erased)
    }
}

fn event_data(data: &EventData) -> Value {
    match data {
        EventData::ApiCall {
            endpoint,
            method,
            status,
            latency_ms,
            units,
        } => {
            json!({"endpoint": endpoint, "method": method, "status": status, "latency_ms": latency_ms, "units": units})
        }
        EventData::Product { feature, action } => json!({"feature": feature, "action": action}),
        EventData::Marketing { campaign, channel } => {
            json!({"campaign": campaign, "channel": channel})
        }
        EventData::SupportTicket {
            ticket_id,
            priority,
            status,
        } => json!({"ticket_id": ticket_id, "priority": priority, "status": status}),
        EventData::Billing {
            invoice_id,
            amount,
            currency,
            status,
        } => {
            json!({"invoice_id": invoice_id, "amount": amount, "currency": currency, "status": status})
        }
    }
}

/// Every event on a row, one column per field of any source (RFC 4180 quoting).
pub const CSV_COLUMNS: [&str; 18] = [
    "id",
    "account",
    "time",
    "source",
    "withheld_from",
    "endpoint",
    "method",
    "status",
    "latency_ms",
    "units",
    "feature",
    "action",
    "campaign",
    "channel",
    "ticket_id",
    "priority",
    "invoice_id",
    "amount_currency",
];

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn events_csv(events: &[&crate::domain::StoredEvent]) -> Vec<u8> {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for e in events {
        let mut row = vec![String::new(); CSV_COLUMNS.len()];
        row[0] = e.id.as_str().to_owned();
        row[1] = e.account.as_str().to_owned();
        row[2] = rfc3339(e.time);
        row[3] = e.data.source().as_str().to_owned();
        row[4] = e
            .withheld
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        match &e.data {
            EventData::ApiCall {
                endpoint,
                method,
                status,
                latency_ms,
                units,
            } => {
                row[5] = endpoint.clone();
                row[6] = (*method).to_owned();
                row[7] = status.to_string();
                row[8] = latency_ms.to_string();
                row[9] = units.to_string();
            }
            EventData::Product { feature, action } => {
                row[10] = feature.clone();
                row[11] = action.clone().unwrap_or_default();
            }
            EventData::Marketing { campaign, channel } => {
                row[12] = campaign.clone();
                row[13] = channel.clone();
            }
            EventData::SupportTicket {
                ticket_id,
                priority,
                status,
            } => {
                row[14] = ticket_id.clone();
                row[15] = (*priority).to_owned();
                row[7] = (*status).to_owned();
            }
            EventData::Billing {
                invoice_id,
                amount,
                currency,
                status,
            } => {
                row[16] = invoice_id.clone();
                row[17] = format!("{amount} {currency}");
                row[7] = (*status).to_owned();
            }
        }
        let line: Vec<String> = row.iter().map(|v| csv_field(v)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
