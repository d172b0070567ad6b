//! A validated, minimised event: only allow-listed fields, no direct identifiers.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::aggregate::HourBucket;
use super::ids::{AccountId, EventId, SubjectId};
use super::subject::Purpose;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    ApiCall,
    Product,
    Marketing,
    SupportTicket,
    Billing,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::ApiCall,
        Source::Product,
        Source::Marketing,
        Source::SupportTicket,
        Source::Billing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::ApiCall => "api_call",
            Source::Product => "product",
            Source::Marketing => "marketing",
            Source::SupportTicket => "support_ticket",
            Source::Billing => "billing",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The allow-listed payload of each source. Enumerated values are `&'static str`
/// taken from the allow-list itself.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    ApiCall {
        endpoint: String,
        method: &'static str,
        status: u16,
        latency_ms: u64,
        units: u64,
    },
    Product {
        feature: String,
        action: Option<String>,
    },
    Marketing {
        campaign: String,
        channel: String,
    },
    SupportTicket {
        ticket_id: String,
        priority: &'static str,
        status: &'static str,
    },
    Billing {
        invoice_id: String,
        /// Decimal text, kept exact (DynamoDB numbers are decimal too).
        amount: String,
        currency: String,
        status: &'static str,
    },
}

impl EventData {
    pub fn source(&self) -> Source {
        match self {
            EventData::ApiCall { .. } => Source::ApiCall,
            EventData::Product { .. } => Source::Product,
            EventData::Marketing { .. } => Source::Marketing,
            EventData::SupportTicket { .. } => Source::SupportTicket,
            EventData::Billing { .. } => Source::Billing,
        }
    }
}

/// An event as it arrived, validated. `user` is the tenant's own id for the person:
/// it lives only in memory until it is swapped for a subject pseudonym.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub time: OffsetDateTime,
    pub account: AccountId,
    pub user: Option<String>,
    pub data: EventData,
}

impl Event {
    pub fn hour(&self) -> HourBucket {
        HourBucket::of(self.time)
    }

    /// `yyyy-mm` (UTC): the month the export reads it in.
    pub fn month(&self) -> String {
        format!("{:04}-{:02}", self.time.year(), u8::from(self.time.month()))
    }
}

/// What is written to the events table.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: EventId,
    pub time: OffsetDateTime,
    pub account: AccountId,
    pub subject: Option<SubjectId>,
    pub data: EventData,
    /// Purposes the event may not be used for (the person's restriction or
    /// objections, docs/decisions/0016). Withheld from analytics, it is stored
    /// but not counted in the dashboard's rollups.
    pub withheld: BTreeSet<Purpose>,
}

impl StoredEvent {
    /// Swaps the user id for its pseudonym; the user id goes no further.
    pub fn pseudonymised(event: Event, subject: Option<SubjectId>) -> Self {
        Self {
            id: event.id,
            time: event.time,
            account: event.account,
            subject,
            data: event.data,
            withheld: BTreeSet::new(),
        }
    }

    /// Whether the event counts in the dashboard's figures.
    pub fn counted(&self) -> bool {
        !self.withheld.contains(&Purpose::Analytics)
    }

    pub fn hour(&self) -> HourBucket {
        HourBucket::of(self.time)
    }

    /// `yyyy-mm` (UTC): the month the export reads it in.
    pub fn month(&self) -> String {
        format!("{:04}-{:02}", self.time.year(), u8::from(self.time.month()))
    }
}
