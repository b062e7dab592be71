//! Counts and times every request on the public listener
//! (`tessera_http_requests_total`, `tessera_http_request_duration_seconds`).
//!
//! Labels are the matched route template (axum's `MatchedPath`, `unmatched` when no route
//! matched), a fixed set of method names, and the status: never the raw path or an
//! unrecognised method, which whoever sends the request chooses, and each distinct label
//! value is a new series in every Prometheus that scrapes us.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: the answer's status and how long it took, by route.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    crate::metrics::request_answered(route, method, response.status().as_u16(), started.elapsed());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"X-SCAN-1234").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
