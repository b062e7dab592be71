-- RFC 9700 §2.1.1: PKCE for every client. Until now a confidential client required PKCE only
-- when registered with --require-pkce; from now on every client does, and a legacy client
-- that must do without is opted out again explicitly (and audibly) by an operator.
update client set require_pkce = true;

-- RFC 7662 §2.1: a public client cannot authenticate, so it may never introspect; such a
-- registration was possible before, and is refused now.
update client set may_introspect = false where secret_digest is null;
