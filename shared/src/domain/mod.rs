//! The domain: what an event is, what may be stored of it, and how it adds up.
//! Nothing here knows about AWS.

pub mod access;
pub mod account;
pub mod aggregate;
pub mod alert;
pub mod audit;
pub mod event;
pub mod export;
pub mod ids;
pub mod privacy;
pub mod purge;
pub mod retention;
pub mod rollup;
pub mod sketch;
pub mod subject;
pub mod validate;

pub use aggregate::{AggregateDelta, HourBucket};
pub use event::{Event, EventData, Source, StoredEvent};
pub use ids::{AccountId, EventId, SubjectId, TenantId};
pub use retention::RawEventRetention;
pub use validate::{validate_event, Limits, Rejection, Validated};
