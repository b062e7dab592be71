//! A seam after the database: the store tells an [`AfterCommit`] hook about the audit events
//! of every transaction that committed, so logging, metrics or a message bus can follow the
//! audit trail without a second write path and without ever seeing a change that rolled back.

use crate::audit::AuditEvent;

/// Told about audit events once they are durable.
///
/// Called after the commit of the transaction that wrote `events`, never for one that rolled
/// back or failed, and never with an empty slice. It runs on the request's task after the
/// change is visible, so it must be quick and must not fail the request: hand slow work
/// (a network call) to a channel or a spawned task.
pub trait AfterCommit: Send + Sync {
    fn committed(&self, events: &[AuditEvent]);
}

/// Two hooks, told in order: `(LogAuditEvents, AuditMetrics)` logs and counts.
impl<A: AfterCommit, B: AfterCommit> AfterCommit for (A, B) {
    fn committed(&self, events: &[AuditEvent]) {
        self.0.committed(events);
        self.1.committed(events);
    }
}

/// The default hook: one structured `info` line per event on the `audit` target, so the
/// trail also reaches the log collector (`log_filter = "audit=info,warn"` keeps just these).
///
/// `user_agent` stays out: it is long, client-chosen text that adds little next to
/// `source_ip`, and the store keeps it. Events never carry secrets (see [`AuditEvent`]), so
/// every field logged here is safe to log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAuditEvents;

impl AfterCommit for LogAuditEvents {
    fn committed(&self, events: &[AuditEvent]) {
        for event in events {
            tracing::info!(
                target: "audit",
                kind = %event.kind,
                actor = %event.actor,
                client_id = event.client_id.as_deref(),
                account_id = event.account_id.as_deref(),
                source_ip = event.source_ip.as_deref(),
                details = %event.details,
                "audit event"
            );
        }
    }
}

/// Derives the audit figures (`crate::metrics::audit_committed`): events by kind, tokens
/// issued by grant type, sign-ins by result. Composed with the log: `(LogAuditEvents,
/// AuditMetrics)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditMetrics;

impl AfterCommit for AuditMetrics {
    fn committed(&self, events: &[AuditEvent]) {
        crate::metrics::audit_committed(events);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::audit::AuditKind;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_audit_events_writes_one_structured_line_per_event_on_the_audit_target() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || sink.clone())
            .finish();
        let mut event = AuditEvent::new(AuditKind::LoginFailed, "user:ada", 42)
            .account("ada")
            .details(serde_json::json!({ "reason": "bad_password" }));
        event.source_ip = Some("192.0.2.1".into());
        event.user_agent = Some("curl/8".into());
        let other = AuditEvent::new(AuditKind::Logout, "user:ada", 43);
        tracing::subscriber::with_default(subscriber, || {
            LogAuditEvents.committed(&[event, other]);
        });

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["target"], "audit");
        assert_eq!(lines[0]["level"], "INFO");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["kind"], "login_failed");
        assert_eq!(fields["actor"], "user:ada");
        assert_eq!(fields["account_id"], "ada");
        assert_eq!(fields["source_ip"], "192.0.2.1");
        assert_eq!(fields["details"], r#"{"reason":"bad_password"}"#);
        assert!(fields.get("client_id").is_none(), "absent, not empty");
        assert!(fields.get("user_agent").is_none());
        assert_eq!(lines[1]["fields"]["kind"], "logout");
    }
}
