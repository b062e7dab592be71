//! Dropping a test's Postgres database when the test ends, shared by the integration tests'
//! `TestDb` and the library's unit tests (`postgres_store`, which include this file by path).

use sqlx::{Connection, Executor, PgConnection};

/// Drops database `name` on the server at `base` and waits until it is gone (or the server
/// cannot be reached). `with (force)`: a server process or pool of the test may still hold
/// connections. On a thread of its own with its own runtime, since the caller's runtime may
/// be a single thread busy running this very drop.
pub fn drop_database(base: &str, name: &str) {
    let (base, name) = (base.to_owned(), name.to_owned());
    let dropped = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if let Ok(mut conn) = PgConnection::connect(&base).await {
                let sql = format!("drop database if exists \"{name}\" with (force)");
                let _ = conn.execute(sql.as_str()).await;
                let _ = conn.close().await;
            }
        });
    });
    let _ = dropped.join();
}
