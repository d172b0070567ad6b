//! The dashboard's web page, served by this function from files compiled into
//! it (`web/`): one origin for the page and the API, so no CORS, and a strict
//! Content-Security-Policy (nothing inline, nothing from another origin). The
//! page asks for a `read` key and keeps it in the tab's session storage only.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use vigil_shared::http::{ApiError, Call};

pub const PAGE_ROUTE: &str = "GET /dashboard";
pub const ASSET_ROUTE: &str = "GET /dashboard/{asset}";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Name, media type, content.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../web/vendor/uplot/uPlot.min.css"),
    ),
];
const PAGE: &str = include_str!("../web/index.html");

/// Whether the call is for the page or one of its assets.
pub fn is_web(call: &Call<'_>) -> bool {
    call.route == PAGE_ROUTE || call.route == ASSET_ROUTE
}

/// The page or the asset the call names; an unknown asset is a 404.
pub fn asset(call: &Call<'_>) -> Result<ApiGatewayV2httpResponse, ApiError> {
    call.query(&[])?;
    let (media_type, content) = if call.route == PAGE_ROUTE {
        ("text/html; charset=utf-8", PAGE)
    } else {
        let name = call.path("asset");
        ASSETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, c)| (*t, *c))
            .ok_or(ApiError::NotFound("no such asset"))?
    };
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = 200;
    let headers = &mut response.headers;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response.body = Some(Body::Text(content.to_owned()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_exist() {
        for reference in PAGE
            .split(['"', '\''])
            .filter(|s| s.starts_with("/dashboard/"))
        {
            let name = reference.trim_start_matches("/dashboard/");
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "{reference} is not served"
            );
        }
        // No inline script or style, which the CSP would block.
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
