//! Failed sign-ins per key: [`LoginThrottleStore`] on SQL.

use async_trait::async_trait;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::accounts::{joined_account_from, ACCOUNT_COLUMNS};
use super::{aliased, placeholder_list, AnyQuery, Row, SqlStore, COMMIT_LAZILY};
use crate::store::{
    AccountRecord, AccountStore, Backend, LoginCount, LoginThrottleStore, StoreError, TakeBack,
    ThrottleKey,
};

impl SqlStore {
    /// The latest `blocked_until` among `keys` (0 when none is known).
    async fn login_blocked_until(&self, keys: &[ThrottleKey<'_>]) -> Result<i64, StoreError> {
        let mut latest = 0;
        for k in keys {
            let row = sqlx::query("select blocked_until from login_throttle where key = $1")
                .bind(k.key)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            if let Some(row) = row {
                latest = latest.max(Row::new(&row).get::<i64>("blocked_until")?);
            }
        }
        Ok(latest)
    }

    /// What the count statement's `rows` say for `keys`.
    async fn counted(
        &self,
        keys: &[ThrottleKey<'_>],
        rows: &[AnyRow],
    ) -> Result<LoginCount, StoreError> {
        let mut counted = Vec::with_capacity(keys.len());
        for k in keys {
            let row = rows
                .iter()
                .map(Row::new)
                .find(|row| row.get::<String>("key").is_ok_and(|key| key == k.key));
            match row {
                Some(row) => counted.push((row.get("failures")?, row.get("blocked_until")?)),
                // A key is blocked: nothing was written, or (a concurrent attempt started a
                // block on one key after this statement began) the other keys stay counted,
                // which errs towards throttling.
                None => {
                    return Ok(LoginCount::Blocked {
                        until: self.login_blocked_until(keys).await?,
                    })
                }
            }
        }
        Ok(LoginCount::Counted(counted))
    }
}

/// An attempt against every key in one statement: counted unless a key is blocked at `$1`
/// (then no row comes back). The keys and their thresholds are `$4`, `$5`, `$6`, `$7`, ….
/// A key's failure count restarts when its last failure is older than `$2`; past the key's
/// free failures the block is `min($3, 2^(over - 1))` seconds, as
/// `LoginThrottlePolicy::delay` computes it. The blocks are checked before any key is
/// counted (Postgres: the statement's snapshot; SQLite: an insert that reads its own table
/// reads it all first), so a block one key of this very attempt starts does not stop the
/// others from counting it. The update's own `where` keeps a key blocked by a concurrent
/// attempt as it is: its row is locked (Postgres) or the write is serialised (SQLite), so
/// the check sees the latest state. Forgotten rows are purged by housekeeping
/// (`Expired::LoginThrottle`), not here.
pub(super) fn count_statement(backend: Backend, keys: usize) -> String {
    let min = match backend {
        Backend::Postgres => "least",
        Backend::Sqlite => "min",
    };
    // Postgres: the count commits lazily (decision 0039). Lost in a crash, it gives back
    // the attempts of the last fraction of a second before it, once per crash.
    let lazily = match backend {
        Backend::Postgres => format!(" and {COMMIT_LAZILY}"),
        Backend::Sqlite => String::new(),
    };
    let block = |failures: &str, threshold: &str| {
        format!(
            "case when {failures} - {threshold} <= 0 then 0 \
             else $1 + {min}($3, 1 << cast({min}({failures} - {threshold} - 1, 30) as integer)) end"
        )
    };
    let key = |i: usize| format!("${}", 4 + 2 * i);
    let threshold = |i: usize| format!("cast(${} as bigint)", 5 + 2 * i);
    // A union rather than `values`: SQLite cannot name the columns of a `values` list.
    let rows: Vec<String> = (0..keys)
        .map(|i| format!("select {} as key, {} as threshold", key(i), threshold(i)))
        .collect();
    let all_keys: Vec<String> = (0..keys).map(key).collect();
    let thresholds: String = (0..keys)
        .map(|i| format!(" when {} then {}", key(i), threshold(i)))
        .collect();
    let failures = "case when login_throttle.updated_at < $2 then 1 \
                    else login_throttle.failures + 1 end";
    format!(
        "insert into login_throttle (key, failures, blocked_until, updated_at) \
         select v.key, 1, {first}, $1 from ({rows}) as v \
         where not exists (select 1 from login_throttle where key in ({all_keys}) \
         and blocked_until >= $1){lazily} \
         on conflict (key) do update set failures = {failures}, \
         blocked_until = {later}, updated_at = $1 \
         where login_throttle.blocked_until < $1 \
         returning key, failures, blocked_until",
        first = block("1", "v.threshold"),
        later = block(
            &format!("({failures})"),
            &format!("(case excluded.key{thresholds} end)")
        ),
        rows = rows.join(" union all "),
        all_keys = all_keys.join(", "),
    )
}

/// Binds [`count_statement`]'s values: `$1` now, `$2` forget before, `$3` the longest
/// delay, then each key and its threshold.
fn bind_count<'q>(
    mut q: AnyQuery<'q>,
    keys: &'q [ThrottleKey<'_>],
    now: i64,
    forget_before: i64,
    max_delay: i64,
) -> AnyQuery<'q> {
    q = q.bind(now).bind(forget_before).bind(max_delay);
    for k in keys {
        q = q.bind(k.key).bind(k.threshold);
    }
    q
}

/// Forgets every failure of a take-back's `clear` key, its placeholder `$first`.
fn clear_sql(first: usize) -> String {
    format!("delete from login_throttle where key = ${first}")
}

/// Takes one counted attempt back from each of `keys` keys, placeholders from `$first`.
fn forgive_sql(first: usize, keys: usize) -> String {
    format!(
        "update login_throttle set failures = failures - 1 \
         where key in ({}) and failures > 0",
        placeholder_list(first, keys)
    )
}

/// Postgres: `take_back`'s writes as `with` clauses (`tc`, `tf`), placeholders from
/// `$first`, to be bound by [`bind_take_back`]; none for an empty take-back.
pub(super) fn take_back_clauses(take_back: &TakeBack, first: usize) -> Vec<String> {
    let mut clauses = Vec::new();
    let mut next = first;
    if take_back.clear.is_some() {
        clauses.push(format!("tc as ({})", clear_sql(next)));
        next += 1;
    }
    if !take_back.forgive.is_empty() {
        clauses.push(format!(
            "tf as ({})",
            forgive_sql(next, take_back.forgive.len())
        ));
    }
    clauses
}

/// How many values [`bind_take_back`] binds.
pub(super) fn take_back_values(take_back: &TakeBack) -> usize {
    usize::from(take_back.clear.is_some()) + take_back.forgive.len()
}

/// Binds [`take_back_clauses`]' values.
pub(super) fn bind_take_back<'q>(mut q: AnyQuery<'q>, take_back: &'q TakeBack) -> AnyQuery<'q> {
    if let Some(key) = &take_back.clear {
        q = q.bind(key);
    }
    for key in &take_back.forgive {
        q = q.bind(key);
    }
    q
}

/// SQLite: `take_back`'s writes, in the caller's transaction.
pub(super) async fn take_back_in(
    conn: &mut AnyConnection,
    take_back: &TakeBack,
) -> Result<(), StoreError> {
    if let Some(key) = &take_back.clear {
        sqlx::query(&clear_sql(1))
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::Unavailable)?;
    }
    if !take_back.forgive.is_empty() {
        let sql = forgive_sql(1, take_back.forgive.len());
        let mut q = sqlx::query(&sql);
        for key in &take_back.forgive {
            q = q.bind(key);
        }
        q.execute(&mut *conn)
            .await
            .map_err(StoreError::Unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl LoginThrottleStore for SqlStore {
    async fn count_login_attempt(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        forget_before: i64,
        max_delay: i64,
    ) -> Result<LoginCount, StoreError> {
        if keys.is_empty() {
            return Ok(LoginCount::Counted(Vec::new()));
        }
        let _turn = self.write_turn().await;
        let sql = count_statement(self.backend, keys.len());
        let rows = bind_count(sqlx::query(&sql), keys, now, forget_before, max_delay)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        self.counted(keys, &rows).await
    }

    async fn count_login_attempt_for(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        forget_before: i64,
        max_delay: i64,
        username: &str,
    ) -> Result<(LoginCount, Option<AccountRecord>), StoreError> {
        if self.backend != Backend::Postgres || keys.is_empty() {
            let count = self
                .count_login_attempt(keys, now, forget_before, max_delay)
                .await?;
            if matches!(count, LoginCount::Blocked { .. }) {
                return Ok((count, None));
            }
            return Ok((count, self.account_by_username(username).await?));
        }
        let _turn = self.write_turn().await;
        // The count's rows beside the user's: a full join on `true` gives every counted key
        // with the user (or nulls), and the user alone (null keys) when nothing was counted.
        let sql = format!(
            "with c as ({}), a as (select {} from account where username = ${}) \
             select c.key, c.failures, c.blocked_until, {} from c full join a on true",
            count_statement(self.backend, keys.len()),
            ACCOUNT_COLUMNS,
            4 + 2 * keys.len(),
            aliased("a", ACCOUNT_COLUMNS)
        );
        let rows = bind_count(sqlx::query(&sql), keys, now, forget_before, max_delay)
            .bind(username)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        let count = self.counted(keys, &rows).await?;
        let account = match (&count, rows.first()) {
            (LoginCount::Counted(_), Some(row)) => joined_account_from(Row::prefixed(row, "a_"))?,
            _ => None,
        };
        Ok((count, account))
    }

    async fn take_back_login_attempt(&self, take_back: &TakeBack) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let clauses = take_back_clauses(take_back, 1);
            if clauses.is_empty() {
                return Ok(());
            }
            let _turn = self.write_turn().await;
            let sql = format!("with {} select 1", clauses.join(", "));
            bind_take_back(sqlx::query(&sql), take_back)
                .execute(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            return Ok(());
        }
        let mut tx = self.begin().await?;
        take_back_in(&mut tx, take_back).await?;
        tx.commit().await
    }
}
