//! The tables ingestion writes, as one `IngestStore`: each port is served by its
//! own adapter.

use std::collections::{HashMap, HashSet};

use super::{AggregateTable, Dynamo, EventTable, SubjectTable};
use crate::config::{Config, ConfigError};
use crate::domain::{AggregateDelta, StoredEvent, SubjectId, TenantId};
use crate::ports::{AggregateStore, EventRef, EventStore, Failures, StoreError, SubjectStore};

#[derive(Debug, Clone)]
pub struct IngestTables {
    pub events: EventTable,
    pub subjects: SubjectTable,
    pub aggregates: AggregateTable,
}

impl IngestTables {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            events: EventTable::new(db, config)?,
            subjects: SubjectTable::new(db, config)?,
            aggregates: AggregateTable::new(db, config)?,
        })
    }
}

impl SubjectStore for IngestTables {
    async fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> Result<HashMap<String, SubjectId>, StoreError> {
        self.subjects.resolve_subjects(tenant, lookups).await
    }
}

impl EventStore for IngestTables {
    async fn existing_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> Result<HashSet<EventRef>, StoreError> {
        self.events.existing_events(tenant, events).await
    }

    async fn put_events(&self, tenant: &TenantId, events: &[StoredEvent]) -> Failures {
        self.events.put_events(tenant, events).await
    }

    async fn delete_events(&self, tenant: &TenantId, events: &[EventRef]) -> Failures {
        self.events.delete_events(tenant, events).await
    }
}

impl AggregateStore for IngestTables {
    async fn add_aggregates(&self, tenant: &TenantId, deltas: &[AggregateDelta]) -> Failures {
        self.aggregates.add_aggregates(tenant, deltas).await
    }
}
