//! The HTTP ceiling: a bare axum server answering `GET /` with a short body, on the same
//! tokio multi-threaded runtime Tessera uses. Usage: `hello 127.0.0.1:PORT`.

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let app = Router::new().route("/", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, app).await
}
