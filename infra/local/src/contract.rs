//! The HTTP API's contract (`openapi.yaml` at the repository's root), served by
//! the local stack at `GET /openapi.yaml` and `GET /openapi.json` without a key,
//! and read by the test that keeps it equal to template.yaml's routes.

use serde_json::Value;

/// The contract, compiled in: the server never depends on the working directory.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

/// Paths the local stack answers itself, without a function behind them.
pub const LOCAL_PATHS: [&str; 2] = ["/openapi.json", "/openapi.yaml"];

/// The contract as JSON.
pub fn as_json() -> Result<Value, String> {
    serde_yaml::from_str::<Value>(OPENAPI_YAML).map_err(|e| format!("openapi.yaml: {e}"))
}

/// `(METHOD, path)` of every operation the contract declares, but the local-only ones.
pub fn routes() -> Result<Vec<(String, String)>, String> {
    let contract = as_json()?;
    let paths = contract["paths"]
        .as_object()
        .ok_or("openapi.yaml: no paths")?;
    let mut routes = Vec::new();
    for (path, operations) in paths {
        if LOCAL_PATHS.contains(&path.as_str()) {
            continue;
        }
        for method in operations.as_object().into_iter().flat_map(|o| o.keys()) {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes.sort();
    Ok(routes)
}
