-- Sign-in through the chain's identity provider (SPEC §12 "Identity"): a staff member's
-- stable user id there (Entra ID `oid`, Okta `uid`, Keycloak `sub`), by which the api
-- finds their store on every request, and their email (for people, not authorization:
-- providers do not verify it for every account).
ALTER TABLE staff
    ADD COLUMN external_subject text,
    ADD COLUMN email text,
    ADD CONSTRAINT staff_external_subject_key UNIQUE (external_subject),
    ADD CONSTRAINT staff_external_subject_length CHECK (length(external_subject) BETWEEN 1 AND 200),
    ADD CONSTRAINT staff_email_shape CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$');
