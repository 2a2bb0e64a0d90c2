//! The e-mails of issue 5 (NT-1, NT-2): the payment confirmation to the buyer
//! and a payment's outcome to the merchant, in the 8 languages, each with a
//! subject, a plain-text body and an HTML body. Rendered once, when the
//! `email_outbox` projection queues the e-mail, so what is sent is what the
//! outbox shows. Every value is HTML-escaped in the HTML body; the card is
//! only ever named by its last four digits.

use caisse_domain::notification::{normalise_language, DEFAULT_BUYER_LANGUAGE};

/// What an e-mail says about a payment.
#[derive(Debug, Clone)]
pub struct PaymentFacts<'a> {
    pub shop_name: &'a str,
    /// An https URL (checked when configured).
    pub logo_url: Option<&'a str>,
    pub order_reference: &'a str,
    /// The amount in major units as text (`49.90`) and its currency.
    pub amount: &'a str,
    pub currency: &'a str,
    /// When it happened, UTC.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub payment_id: &'a str,
    pub card_last_four: Option<&'a str>,
}

/// An e-mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

struct Words {
    confirmation: &'static str,
    accepted: &'static str,
    thanks: &'static str,
    merchant_intro: &'static str,
    order: &'static str,
    amount: &'static str,
    date: &'static str,
    payment: &'static str,
    card: &'static str,
    footer: &'static str,
    /// authorised, refused, refunded, cancelled, captured.
    events: [&'static str; 5],
    decimal_comma: bool,
}

fn words(language: &str) -> &'static Words {
    match normalise_language(language).unwrap_or(DEFAULT_BUYER_LANGUAGE) {
        "en" => &EN,
        "de" => &DE,
        "es" => &ES,
        "it" => &IT,
        "nl" => &NL,
        "pt" => &PT,
        "sv" => &SV,
        _ => &FR,
    }
}

const FR: Words = Words {
    confirmation: "Confirmation de paiement – commande",
    accepted: "Votre paiement a bien été accepté.",
    thanks: "Merci pour votre commande.",
    merchant_intro: "Un paiement de votre boutique a changé :",
    order: "Référence de commande",
    amount: "Montant",
    date: "Date",
    payment: "Identifiant du paiement",
    card: "Carte se terminant par",
    footer: "Cet e-mail a été envoyé automatiquement, merci de ne pas y répondre.",
    events: [
        "Paiement autorisé",
        "Paiement refusé",
        "Paiement remboursé",
        "Paiement annulé",
        "Paiement encaissé",
    ],
    decimal_comma: true,
};

const EN: Words = Words {
    confirmation: "Payment confirmation – order",
    accepted: "Your payment has been accepted.",
    thanks: "Thank you for your order.",
    merchant_intro: "A payment of your shop has changed:",
    order: "Order reference",
    amount: "Amount",
    date: "Date",
    payment: "Payment ID",
    card: "Card ending in",
    footer: "This e-mail was sent automatically; please do not reply.",
    events: [
        "Payment authorised",
        "Payment refused",
        "Payment refunded",
        "Payment cancelled",
        "Payment captured",
    ],
    decimal_comma: false,
};

const DE: Words = Words {
    confirmation: "Zahlungsbestätigung – Bestellung",
    accepted: "Ihre Zahlung wurde angenommen.",
    thanks: "Vielen Dank für Ihre Bestellung.",
    merchant_intro: "Eine Zahlung Ihres Shops hat sich geändert:",
    order: "Bestellnummer",
    amount: "Betrag",
    date: "Datum",
    payment: "Zahlungs-ID",
    card: "Karte endend auf",
    footer: "Diese E-Mail wurde automatisch versendet. Bitte antworten Sie nicht darauf.",
    events: [
        "Zahlung autorisiert",
        "Zahlung abgelehnt",
        "Zahlung erstattet",
        "Zahlung storniert",
        "Zahlung eingezogen",
    ],
    decimal_comma: true,
};

const ES: Words = Words {
    confirmation: "Confirmación de pago – pedido",
    accepted: "Su pago ha sido aceptado.",
    thanks: "Gracias por su pedido.",
    merchant_intro: "Un pago de su tienda ha cambiado:",
    order: "Referencia del pedido",
    amount: "Importe",
    date: "Fecha",
    payment: "Identificador del pago",
    card: "Tarjeta terminada en",
    footer: "Este correo electrónico se ha enviado automáticamente; por favor, no responda.",
    events: [
        "Pago autorizado",
        "Pago rechazado",
        "Pago reembolsado",
        "Pago cancelado",
        "Pago cobrado",
    ],
    decimal_comma: true,
};

const IT: Words = Words {
    confirmation: "Conferma di pagamento – ordine",
    accepted: "Il suo pagamento è stato accettato.",
    thanks: "Grazie per il suo ordine.",
    merchant_intro: "Un pagamento del suo negozio è cambiato:",
    order: "Riferimento dell'ordine",
    amount: "Importo",
    date: "Data",
    payment: "ID del pagamento",
    card: "Carta che termina con",
    footer: "Questa e-mail è stata inviata automaticamente; si prega di non rispondere.",
    events: [
        "Pagamento autorizzato",
        "Pagamento rifiutato",
        "Pagamento rimborsato",
        "Pagamento annullato",
        "Pagamento incassato",
    ],
    decimal_comma: true,
};

const NL: Words = Words {
    confirmation: "Betalingsbevestiging – bestelling",
    accepted: "Uw betaling is geaccepteerd.",
    thanks: "Bedankt voor uw bestelling.",
    merchant_intro: "Een betaling van uw winkel is gewijzigd:",
    order: "Bestelreferentie",
    amount: "Bedrag",
    date: "Datum",
    payment: "Betalings-ID",
    card: "Kaart eindigend op",
    footer: "Deze e-mail is automatisch verzonden; gelieve niet te antwoorden.",
    events: [
        "Betaling geautoriseerd",
        "Betaling geweigerd",
        "Betaling terugbetaald",
        "Betaling geannuleerd",
        "Betaling geïnd",
    ],
    decimal_comma: true,
};

const PT: Words = Words {
    confirmation: "Confirmação de pagamento – encomenda",
    accepted: "O seu pagamento foi aceite.",
    thanks: "Obrigado pela sua encomenda.",
    merchant_intro: "Um pagamento da sua loja foi alterado:",
    order: "Referência da encomenda",
    amount: "Montante",
    date: "Data",
    payment: "ID do pagamento",
    card: "Cartão terminado em",
    footer: "Este e-mail foi enviado automaticamente; por favor, não responda.",
    events: [
        "Pagamento autorizado",
        "Pagamento recusado",
        "Pagamento reembolsado",
        "Pagamento cancelado",
        "Pagamento capturado",
    ],
    decimal_comma: true,
};

const SV: Words = Words {
    confirmation: "Betalningsbekräftelse – order",
    accepted: "Din betalning har godkänts.",
    thanks: "Tack för din beställning.",
    merchant_intro: "En betalning i din butik har ändrats:",
    order: "Orderreferens",
    amount: "Belopp",
    date: "Datum",
    payment: "Betalnings-ID",
    card: "Kort som slutar på",
    footer: "Det här e-postmeddelandet skickades automatiskt; svara inte på det.",
    events: [
        "Betalning auktoriserad",
        "Betalning nekad",
        "Betalning återbetald",
        "Betalning avbruten",
        "Betalning debiterad",
    ],
    decimal_comma: true,
};

/// Escapes a value for HTML text and attribute values.
pub fn escape_html(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn amount_text(words: &Words, facts: &PaymentFacts<'_>) -> String {
    let amount = if words.decimal_comma {
        facts.amount.replace('.', ",")
    } else {
        facts.amount.to_string()
    };
    format!("{amount} {}", facts.currency)
}

fn rows(words: &Words, facts: &PaymentFacts<'_>) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        (words.order, facts.order_reference.to_string()),
        (words.amount, amount_text(words, facts)),
        (
            words.date,
            facts.occurred_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        ),
        (words.payment, facts.payment_id.to_string()),
    ];
    if let Some(last_four) = facts.card_last_four {
        rows.push((words.card, last_four.to_string()));
    }
    rows
}

fn render(
    language: &str,
    facts: &PaymentFacts<'_>,
    heading: &str,
    lines: &[&str],
) -> (String, String) {
    let words = words(language);
    let rows = rows(words, facts);
    let mut text = format!("{}\n\n{heading}\n\n", facts.shop_name);
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    for (label, value) in &rows {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text.push_str(&format!("\n-- \n{}\n", words.footer));

    let lang = escape_html(normalise_language(language).unwrap_or(DEFAULT_BUYER_LANGUAGE));
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif;color:#222\">\n",
        escape_html(heading)
    );
    if let Some(logo) = facts.logo_url {
        html.push_str(&format!(
            "<p><img src=\"{}\" alt=\"{}\" style=\"max-height:64px\"></p>\n",
            escape_html(logo),
            escape_html(facts.shop_name)
        ));
    }
    html.push_str(&format!(
        "<p><strong>{}</strong></p>\n<h1 style=\"font-size:20px\">{}</h1>\n",
        escape_html(facts.shop_name),
        escape_html(heading)
    ));
    for line in lines {
        html.push_str(&format!("<p>{}</p>\n", escape_html(line)));
    }
    html.push_str("<table cellpadding=\"4\">\n");
    for (label, value) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            escape_html(label),
            escape_html(value)
        ));
    }
    html.push_str(&format!(
        "</table>\n<p style=\"color:#888;font-size:12px\">{}</p>\n</body></html>\n",
        escape_html(words.footer)
    ));
    (text, html)
}

/// The words of the endpoint-disabled alert, per language.
struct AlertWords {
    subject: &'static str,
    explanation: &'static str,
    endpoint: &'static str,
    disabled_on: &'static str,
    what_to_do: &'static str,
}

fn alert_words(language: &str) -> &'static AlertWords {
    match normalise_language(language).unwrap_or(DEFAULT_BUYER_LANGUAGE) {
        "en" => &AlertWords {
            subject: "webhook endpoint disabled",
            explanation: "Deliveries to this endpoint have failed for about three days: it has been disabled and no longer receives events.",
            endpoint: "Endpoint",
            disabled_on: "Disabled on",
            what_to_do: "Once your server is back, enable it again with the enableWebhookEndpoint mutation; pending deliveries will resume, and webhookDeliveries lists the failed ones (redeliverWebhook sends them again).",
        },
        "de" => &AlertWords {
            subject: "Webhook-Endpunkt deaktiviert",
            explanation: "Zustellungen an diesen Endpunkt schlagen seit etwa drei Tagen fehl: Er wurde deaktiviert und empfängt keine Ereignisse mehr.",
            endpoint: "Endpunkt",
            disabled_on: "Deaktiviert am",
            what_to_do: "Sobald Ihr Server wieder erreichbar ist, aktivieren Sie ihn mit der Mutation enableWebhookEndpoint; ausstehende Zustellungen werden fortgesetzt, und webhookDeliveries listet die fehlgeschlagenen auf (redeliverWebhook sendet sie erneut).",
        },
        "es" => &AlertWords {
            subject: "punto de recepción de webhooks desactivado",
            explanation: "Los envíos a este punto de recepción fallan desde hace unos tres días: se ha desactivado y ya no recibe eventos.",
            endpoint: "Punto de recepción",
            disabled_on: "Desactivado el",
            what_to_do: "Cuando su servidor vuelva a estar disponible, reactívelo con la mutación enableWebhookEndpoint; los envíos pendientes se reanudarán, y webhookDeliveries lista los fallidos (redeliverWebhook los reenvía).",
        },
        "it" => &AlertWords {
            subject: "endpoint webhook disattivato",
            explanation: "Gli invii a questo endpoint falliscono da circa tre giorni: è stato disattivato e non riceve più eventi.",
            endpoint: "Endpoint",
            disabled_on: "Disattivato il",
            what_to_do: "Quando il server sarà di nuovo raggiungibile, riattivalo con la mutation enableWebhookEndpoint; gli invii in sospeso riprenderanno, e webhookDeliveries elenca quelli falliti (redeliverWebhook li invia di nuovo).",
        },
        "nl" => &AlertWords {
            subject: "webhook-eindpunt uitgeschakeld",
            explanation: "Leveringen aan dit eindpunt mislukken al ongeveer drie dagen: het is uitgeschakeld en ontvangt geen gebeurtenissen meer.",
            endpoint: "Eindpunt",
            disabled_on: "Uitgeschakeld op",
            what_to_do: "Schakel het weer in met de mutatie enableWebhookEndpoint zodra uw server weer bereikbaar is; openstaande leveringen worden hervat, en webhookDeliveries toont de mislukte (redeliverWebhook verstuurt ze opnieuw).",
        },
        "pt" => &AlertWords {
            subject: "endpoint de webhooks desativado",
            explanation: "Os envios para este endpoint falham há cerca de três dias: foi desativado e já não recebe eventos.",
            endpoint: "Endpoint",
            disabled_on: "Desativado em",
            what_to_do: "Quando o seu servidor estiver de novo disponível, reative-o com a mutação enableWebhookEndpoint; os envios pendentes serão retomados, e webhookDeliveries lista os que falharam (redeliverWebhook envia-os de novo).",
        },
        "sv" => &AlertWords {
            subject: "webhook-slutpunkt inaktiverad",
            explanation: "Leveranser till den här slutpunkten har misslyckats i ungefär tre dagar: den har inaktiverats och tar inte längre emot händelser.",
            endpoint: "Slutpunkt",
            disabled_on: "Inaktiverad",
            what_to_do: "När din server fungerar igen aktiverar du den med mutationen enableWebhookEndpoint; väntande leveranser återupptas, och webhookDeliveries listar de misslyckade (redeliverWebhook skickar dem igen).",
        },
        _ => &AlertWords {
            subject: "point de réception de webhooks désactivé",
            explanation: "Les envois vers ce point de réception échouent depuis environ trois jours : il a été désactivé et ne reçoit plus d'événements.",
            endpoint: "Point de réception",
            disabled_on: "Désactivé le",
            what_to_do: "Une fois votre serveur rétabli, réactivez-le avec la mutation enableWebhookEndpoint ; les envois en attente reprendront, et webhookDeliveries liste ceux qui ont échoué (redeliverWebhook les renvoie).",
        },
    }
}

/// The alert to the merchant, in the shop's merchant language, that a webhook
/// endpoint was disabled after its deliveries failed for about three days
/// (issue 5).
pub fn endpoint_disabled(
    language: &str,
    shop_name: &str,
    url: &str,
    endpoint_id: &str,
    occurred_at: chrono::DateTime<chrono::Utc>,
) -> RenderedEmail {
    let language = normalise_language(language).unwrap_or(DEFAULT_BUYER_LANGUAGE);
    let words = alert_words(language);
    // French typography puts a space before the colon.
    let colon = if language == "fr" { " :" } else { ":" };
    let subject = format!("{shop_name}{colon} {}", words.subject);
    let when = occurred_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let lines = [
        words.explanation.to_string(),
        format!("URL{colon} {url}"),
        format!("{}{colon} {endpoint_id}", words.endpoint),
        format!("{}{colon} {when}", words.disabled_on),
        words.what_to_do.to_string(),
    ];
    let mut text = format!("{shop_name}\n\n{subject}\n\n");
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"{language}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif;color:#222\">\n<h1 style=\"font-size:20px\">{}</h1>\n",
        escape_html(&subject),
        escape_html(&subject)
    );
    for line in &lines {
        html.push_str(&format!("<p>{}</p>\n", escape_html(line)));
    }
    html.push_str("</body></html>\n");
    RenderedEmail {
        subject,
        text,
        html,
    }
}

/// The buyer's confirmation of an authorised payment (NT-2).
pub fn buyer_confirmation(language: &str, facts: &PaymentFacts<'_>) -> RenderedEmail {
    let words = words(language);
    let subject = format!(
        "{}: {} {}",
        facts.shop_name, words.confirmation, facts.order_reference
    );
    let (text, html) = render(
        language,
        facts,
        words
            .confirmation
            .split(" – ")
            .next()
            .unwrap_or(words.confirmation),
        &[words.accepted, words.thanks],
    );
    RenderedEmail {
        subject,
        text,
        html,
    }
}

/// The merchant's notice of a payment event (NT-1); None for a type with no
/// e-mail.
pub fn merchant_notification(
    language: &str,
    event_type: &str,
    facts: &PaymentFacts<'_>,
) -> Option<RenderedEmail> {
    let words = words(language);
    let index = caisse_domain::notification::EMAIL_EVENT_TYPES
        .iter()
        .position(|t| *t == event_type)?;
    let heading = words.events[index];
    let subject = format!(
        "{}: {heading} – {} {}",
        facts.shop_name, words.order, facts.order_reference
    );
    let (text, html) = render(language, facts, heading, &[words.merchant_intro]);
    Some(RenderedEmail {
        subject,
        text,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use caisse_domain::notification::{EMAIL_EVENT_TYPES, LANGUAGES};
    use chrono::TimeZone;

    fn facts() -> PaymentFacts<'static> {
        PaymentFacts {
            shop_name: "Chez <Jo> & Fils",
            logo_url: Some("https://cdn.example/logo.png?a=1&b=\"2\""),
            order_reference: "ORD-<42>",
            amount: "49.90",
            currency: "EUR",
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap(),
            payment_id: "pay_1",
            card_last_four: Some("0006"),
        }
    }

    #[test]
    fn every_language_has_its_own_wording_and_every_value_is_escaped() {
        let mut subjects = std::collections::HashSet::new();
        for language in LANGUAGES {
            let email = buyer_confirmation(language, &facts());
            assert!(subjects.insert(email.subject.clone()), "{language}");
            assert!(email.text.contains("ORD-<42>"), "{}", email.text);
            assert!(email.html.contains("ORD-&lt;42&gt;"), "{}", email.html);
            assert!(email.html.contains("Chez &lt;Jo&gt; &amp; Fils"));
            assert!(email
                .html
                .contains("src=\"https://cdn.example/logo.png?a=1&amp;b=&quot;2&quot;\""));
            assert!(!email.html.contains("<Jo>") && !email.html.contains("ORD-<42>"));
            for event_type in EMAIL_EVENT_TYPES {
                let notice = merchant_notification(language, event_type, &facts()).unwrap();
                assert!(notice.subject.contains("ORD-<42>"));
                assert!(!notice.html.contains("<Jo>"));
            }
        }
        let german = buyer_confirmation("de", &facts());
        assert!(
            german.subject.contains("Zahlungsbestätigung"),
            "{}",
            german.subject
        );
        assert!(german.text.contains("49,90 EUR"), "{}", german.text);
        let english = buyer_confirmation("EN", &facts());
        assert!(english.text.contains("49.90 EUR"), "{}", english.text);
        // Unknown or absent: French.
        assert_eq!(
            buyer_confirmation("xx", &facts()),
            buyer_confirmation("fr", &facts())
        );
        assert!(merchant_notification("fr", "payment.shipped", &facts()).is_none());
    }

    #[test]
    fn the_endpoint_alert_is_written_in_each_language_and_escaped() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 5, 10, 0, 0).unwrap();
        let mut subjects = std::collections::HashSet::new();
        for language in LANGUAGES {
            let alert = endpoint_disabled(
                language,
                "Chez <Jo>",
                "https://hooks.example/in?a=1&b=2",
                "whe_1",
                at,
            );
            assert!(subjects.insert(alert.subject.clone()), "{language}");
            assert!(alert.text.contains("https://hooks.example/in?a=1&b=2"));
            assert!(alert.text.contains("2026-03-05 10:00 UTC"));
            assert!(alert.html.contains(&format!("lang=\"{language}\"")));
            assert!(alert.html.contains("a=1&amp;b=2") && !alert.html.contains("<Jo>"));
            assert!(alert.text.contains("enableWebhookEndpoint"), "{language}");
        }
        assert!(endpoint_disabled("en", "Shop", "u", "whe_1", at)
            .subject
            .ends_with("Shop: webhook endpoint disabled"));
        assert!(endpoint_disabled("fr", "Shop", "u", "whe_1", at)
            .subject
            .ends_with("Shop : point de réception de webhooks désactivé"));
    }

    #[test]
    fn no_logo_no_image() {
        let facts = PaymentFacts {
            logo_url: None,
            ..facts()
        };
        assert!(!buyer_confirmation("en", &facts).html.contains("<img"));
    }
}
