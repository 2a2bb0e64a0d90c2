-- Issue 5: an e-mail's rendered bodies apart from its sending state. They are
-- written once; claiming an e-mail and recording each attempt then rewrite a
-- small row, not kilobytes of text and HTML (measured: e-mails were most of
-- what notifications cost the payments on SQLite, docs/performance.md).
CREATE TABLE email_bodies (
    email_id   TEXT PRIMARY KEY,
    text_body  TEXT NOT NULL,
    html_body  TEXT NOT NULL
);
INSERT INTO email_bodies (email_id, text_body, html_body)
    SELECT email_id, text_body, html_body FROM email_outbox;
ALTER TABLE email_outbox DROP COLUMN text_body;
ALTER TABLE email_outbox DROP COLUMN html_body;
