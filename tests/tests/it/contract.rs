//! The OpenAPI contract (`openapi.yaml`) against the code: the same routes as
//! template.yaml and the local server, each route's security requirement is the
//! scope its function enforces, and the local stack serves the contract.
//! (schemathesis, run by ./infra/test, checks requests and answers against it.)

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use vigil_shared::domain::access::Scope;
use vigil_tests::TestStack;

fn contract() -> Value {
    vigil_local::contract::as_json().expect("openapi.yaml parses")
}

#[tokio::test]
async fn the_contract_template_and_local_server_have_the_same_routes() {
    let stack = TestStack::start().await;
    let contract: BTreeSet<(String, String)> = vigil_local::contract::routes()
        .expect("routes")
        .into_iter()
        .collect();
    let template: BTreeSet<(String, String)> = stack
        .stack
        .functions
        .iter()
        .flat_map(|f| f.routes.iter())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let served: BTreeSet<(String, String)> = stack
        .local_api()
        .routes()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        contract.difference(&template).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in openapi.yaml, not in template.yaml"
    );
    assert_eq!(
        template.difference(&contract).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in template.yaml, not in openapi.yaml"
    );
    assert_eq!(
        served, template,
        "the local server serves the template's routes"
    );
    assert!(contract.len() >= 7, "{contract:?}");
    stack.shutdown().await;
}

/// `(method, path, scope)` of every keyed operation, from the contract.
fn scoped_operations() -> Vec<(String, String, String)> {
    let contract = contract();
    let mut found = Vec::new();
    for (path, operations) in contract["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let security = operation["security"]
                .as_array()
                .expect("security on every operation");
            if vigil_local::contract::LOCAL_PATHS.contains(&path.as_str()) {
                assert!(security.is_empty(), "{path} needs no key");
                continue;
            }
            if security.is_empty() {
                // The dashboard's page asks for a key itself; nothing else goes keyless.
                let web = operation["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "web"));
                assert!(
                    web && path.starts_with("/dashboard"),
                    "{method} {path} needs a key"
                );
                continue;
            }
            let scopes = security[0]["apiKey"]
                .as_array()
                .expect("apiKey requirement");
            assert_eq!(scopes.len(), 1, "{method} {path}: one scope");
            let scope = scopes[0].as_str().expect("scope").to_owned();
            assert!(Scope::parse(&scope).is_some(), "{scope}");
            found.push((method.to_uppercase(), path.clone(), scope));
        }
    }
    found
}

#[tokio::test]
async fn each_route_enforces_the_scope_its_contract_names() {
    let stack = TestStack::start().await;
    for (method, path, scope) in scoped_operations() {
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| s.as_str() != scope)
            .collect();
        let key = stack.issue_key("contract", &others).await;
        let concrete = path
            .replace("{account}", "acme")
            .replace("{key_id}", "0123456789abcdef");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = stack
            .call(method.clone(), &concrete, Some(&key), None)
            .await;
        assert_eq!(status, 403, "{method} {concrete}: {body}");
        assert_eq!(
            body["error"]["message"],
            format!("this key lacks the {scope} scope"),
            "{method} {concrete}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn the_web_page_is_keyless_in_contract_and_template_alike_and_strict() {
    let stack = TestStack::start().await;
    let keyless_in_template: BTreeSet<String> = stack
        .stack
        .functions
        .iter()
        .flat_map(|f| f.routes.iter())
        .filter(|r| !r.authorized)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        keyless_in_template,
        BTreeSet::from([
            "GET /dashboard".to_owned(),
            "GET /dashboard/{asset}".to_owned()
        ])
    );
    for (path, media) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        (
            "/dashboard/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        let response = stack
            .http
            .get(format!("{}{path}", stack.api))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"].to_str().ok(), Some(media), "{path}");
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
    }
    let (status, body) = stack
        .call(Method::GET, "/dashboard/secrets.txt", None, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, Value::from("not_found"))
    );
    // The page's data still needs a key.
    let (status, _) = stack.call(Method::GET, "/v1/accounts", None, None).await;
    assert_eq!(status, 401);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_local_stack_serves_the_contract_without_a_key() {
    let stack = TestStack::start().await;
    let (status, json) = stack.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(json["openapi"], "3.1.0");
    assert_eq!(json, contract());
    let response = stack
        .http
        .get(format!("{}/openapi.yaml", stack.api))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/yaml")
    );
    let text = response.text().await.expect("text");
    assert_eq!(text, vigil_local::contract::OPENAPI_YAML);
    stack.shutdown().await;
}
