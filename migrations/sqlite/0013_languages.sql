-- Issue 5: the language of a shop's merchant e-mails (one of fr, en, de, es,
-- it, nl, pt, sv). Settings configured before it were French.
ALTER TABLE notification_settings_view ADD COLUMN language TEXT NOT NULL DEFAULT 'fr';

-- The buyer's language of the payment, for the buyer's confirmation of an
-- authorisation granted later (a deferred authorisation).
ALTER TABLE payments_view ADD COLUMN buyer_language TEXT;
