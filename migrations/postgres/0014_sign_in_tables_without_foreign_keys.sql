-- No foreign keys on the tables a sign-in writes (decision 0040), as on token since 0012
-- (decision 0033). Each checked key took a `for key share` lock on the parent row: every
-- sign-in locked its user's row, and every consent and code its client's and user's, six
-- row locks per code flow, each a WAL record and, with other sign-ins for the same client,
-- a multixact. What they gave is kept by other means:
-- - the writes look the client and the user up in the row they write, and the columns'
--   `not null` refuses the row when either is gone;
-- - deleting a client or a user deletes its consents, grants, codes and sessions by name in
--   the same transaction;
-- - a row written while its client or user was being deleted (both in flight at once) is
--   unreachable: a session's read joins its user, a code's redemption its user and the
--   client's authentication, and a token of its grant reads as revoked.
alter table session drop constraint session_account_id_fkey;
alter table consent drop constraint consent_account_id_fkey;
alter table consent drop constraint consent_client_id_fkey;
alter table oauth_grant drop constraint oauth_grant_client_id_fkey;
alter table oauth_grant drop constraint oauth_grant_account_id_fkey;
alter table authorization_code drop constraint authorization_code_grant_id_fkey;
alter table authorization_code drop constraint authorization_code_client_id_fkey;
alter table authorization_code drop constraint authorization_code_account_id_fkey;
