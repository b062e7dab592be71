//! The audit trail: [`AuditStore`] on SQL. Events that belong to a change are written by
//! that change's transaction ([`super::Tx::audit`]); these are the stand-alone ones.

use async_trait::async_trait;

use super::{insert_audit, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::store::{AuditRecord, AuditStore, StoreError};

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await.map_err(StoreError::Unavailable)?;
        insert_audit(&mut conn, event).await?;
        // One statement outside a transaction commits by itself: the event is durable now.
        self.hook.committed(std::slice::from_ref(event));
        Ok(())
    }

    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "select id, created_at, kind, actor, client_id, account_id, source_ip, user_agent, \
             details from audit_event order by id desc limit $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        rows.iter()
            .map(|row| {
                let row = Row::new(row);
                Ok(AuditRecord {
                    id: row.get("id")?,
                    event: AuditEvent {
                        created_at: row.get("created_at")?,
                        kind: row.get("kind")?,
                        actor: row.get("actor")?,
                        client_id: row.get("client_id")?,
                        account_id: row.get("account_id")?,
                        source_ip: row.get("source_ip")?,
                        user_agent: row.get("user_agent")?,
                        details: row.json("details")?,
                    },
                })
            })
            .collect()
    }
}
