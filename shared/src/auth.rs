//! Who is calling: read from the authorizer's context, never from the body or path.
//! This is the one place functions learn the tenant.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use thiserror::Error;

use crate::domain::access::Scope;
use crate::domain::TenantId;

/// Names of the authorizer context entries.
pub const CONTEXT_TENANT: &str = "tenant";
pub const CONTEXT_KEY_ID: &str = "key_id";
pub const CONTEXT_SCOPES: &str = "scopes";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The key's public id: what logs and audit entries name. Never the secret.
    pub key_id: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("this key lacks the {0} scope")]
    MissingScope(Scope),
}

/// The caller the authorizer resolved, if it did.
pub fn caller(request: &ApiGatewayV2httpRequest) -> Result<Caller, AuthError> {
    let context = &request
        .request_context
        .authorizer
        .as_ref()
        .ok_or(AuthError::Unauthenticated)?
        .fields;
    let text = |name: &str| context.get(name).and_then(|v| v.as_str());
    let tenant = text(CONTEXT_TENANT)
        .and_then(|t| TenantId::parse(t).ok())
        .ok_or(AuthError::Unauthenticated)?;
    let key_id = text(CONTEXT_KEY_ID)
        .ok_or(AuthError::Unauthenticated)?
        .to_owned();
    let scopes = text(CONTEXT_SCOPES)
        .and_then(Scope::parse_list)
        .ok_or(AuthError::Unauthenticated)?;
    Ok(Caller {
        tenant,
        key_id,
        scopes,
    })
}

/// The caller, if its key holds `scope`.
pub fn authorize(request: &ApiGatewayV2httpRequest, scope: Scope) -> Result<Caller, AuthError> {
    let caller = caller(request)?;
    if caller.scopes.contains(&scope) {
        Ok(caller)
    } else {
        Err(AuthError::MissingScope(scope))
    }
}

/// The request id API Gateway assigned.
pub fn request_id(request: &ApiGatewayV2httpRequest) -> String {
    request
        .request_context
        .request_id
        .clone()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayRequestAuthorizer;
    use serde_json::json;

    fn with_context(context: serde_json::Value) -> ApiGatewayV2httpRequest {
        let mut request = ApiGatewayV2httpRequest::default();
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.fields = serde_json::from_value(context).expect("map");
        request.request_context.authorizer = Some(authorizer);
        request
    }

    #[test]
    fn scopes_are_enforced() {
        let request = with_context(json!({"tenant": "t1", "key_id": "k", "scopes": "ingest read"}));
        assert_eq!(
            authorize(&request, Scope::Read).map(|c| c.tenant.to_string()),
            Ok("t1".into())
        );
        assert_eq!(
            authorize(&request, Scope::Admin),
            Err(AuthError::MissingScope(Scope::Admin))
        );
        assert_eq!(
            caller(&ApiGatewayV2httpRequest::default()),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(
            caller(&with_context(
                json!({"tenant": "t#1", "key_id": "k", "scopes": "read"})
            )),
            Err(AuthError::Unauthenticated)
        );
    }
}
