//! The functions the local stack can host, by the binary name template.yaml
//! gives them (`Metadata.BuildProperties.Binary`). Adding a function is one
//! `register` line here; tests register their own (e.g. a scheduled job).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;
use vigil_shared::config::Config;
use vigil_shared::function::Function;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InvokeError {
    #[error("no function {0} in the stack")]
    NoSuchFunction(String),
    #[error("the event does not fit the function: {0}")]
    BadEvent(String),
    /// The handler returned an error (Lambda's "Unhandled" function error).
    #[error("{0}")]
    Failed(String),
}

/// A function as Lambda sees it: JSON in, JSON out.
pub trait Invoke: Send + Sync {
    fn invoke(&self, event: Value) -> BoxFuture<'_, Result<Value, InvokeError>>;
}

impl<F: Function> Invoke for F {
    fn invoke(&self, event: Value) -> BoxFuture<'_, Result<Value, InvokeError>> {
        Box::pin(async move {
            let event: F::Event =
                serde_json::from_value(event).map_err(|e| InvokeError::BadEvent(e.to_string()))?;
            let output = self
                .call(event)
                .await
                .map_err(|e| InvokeError::Failed(e.to_string()))?;
            serde_json::to_value(output).map_err(|e| InvokeError::Failed(e.to_string()))
        })
    }
}

type Builder =
    Box<dyn Fn(Config) -> BoxFuture<'static, Result<Arc<dyn Invoke>, String>> + Send + Sync>;

/// Binary name -> how to build the function at its cold start.
#[derive(Default)]
pub struct Registry {
    builders: HashMap<String, Builder>,
}

impl Registry {
    /// vigil's functions.
    pub fn standard() -> Self {
        let mut registry = Self::default();
        registry
            .register("vigil-ingest", |c| async move {
                vigil_ingest::Deps::connect(&c).await
            })
            .register("vigil-admin", |c| async move {
                vigil_admin::Deps::connect(&c).await
            })
            .register("vigil-dashboard", |c| async move {
                vigil_dashboard::Deps::connect(&c).await
            })
            .register("vigil-authorizer", |c| async move {
                vigil_authorizer::Deps::connect(&c).await
            })
            .register("vigil-audit-anchor", |c| async move {
                vigil_audit_anchor::Deps::connect(&c).await
            })
            .register("vigil-privacy", |c| async move {
                vigil_privacy::Deps::connect(&c).await
            })
            .register("vigil-purge", |c| async move {
                vigil_purge::Deps::connect(&c).await
            })
            .register("vigil-export", |c| async move {
                vigil_export::Deps::connect(&c).await
            })
            .register("vigil-alerts", |c| async move {
                vigil_alerts::Deps::connect(&c).await
            });
        registry
    }

    /// Registers `binary`: `connect` builds it from its configuration, once.
    pub fn register<F, E, Fut, C>(&mut self, binary: &str, connect: C) -> &mut Self
    where
        F: Function,
        E: std::fmt::Display,
        Fut: Future<Output = Result<F, E>> + Send + 'static,
        C: Fn(Config) -> Fut + Send + Sync + 'static,
    {
        let builder: Builder = Box::new(move |config| {
            let connecting = connect(config);
            Box::pin(async move {
                connecting
                    .await
                    .map(|function| Arc::new(function) as Arc<dyn Invoke>)
                    .map_err(|e| e.to_string())
            })
        });
        self.builders.insert(binary.to_owned(), builder);
        self
    }

    /// Builds `binary` with `config`, like a cold start; None if it is not registered.
    pub async fn build(
        &self,
        binary: &str,
        config: Config,
    ) -> Option<Result<Arc<dyn Invoke>, String>> {
        let builder = self.builders.get(binary)?;
        Some(builder(config).await)
    }
}
