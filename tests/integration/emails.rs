//! E-mail notifications end to end (issue 5, NT-1, NT-2): merchant settings
//! over GraphQL, the buyer's confirmation in the payment's language and the
//! merchant's refund notice, sent over SMTP to an in-process SMTP sink (a
//! minimal server on tokio that accepts everything and keeps each message),
//! retried while the server is down, and written to `data_dir/mail/` in
//! directory mode.

use std::sync::{Arc, Mutex};

use caisse_infrastructure::config::{MailConfig, MailMode, SmtpTls};
use caisse_tests::{data, error_code, next_reference_number, payment_input, Backend, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message the sink received.
#[derive(Debug, Clone)]
struct Received {
    recipients: Vec<String>,
    data: String,
}

/// A minimal SMTP server: 220 on connect, 250 to EHLO/HELO/MAIL/RCPT/RSET/NOOP,
/// 354 to DATA then 250 after the lone dot, 221 to QUIT.
struct SmtpSink {
    port: u16,
    messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
    /// The open sessions: the mailer keeps its connections in a pool, so a
    /// server going down must close them too.
    sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        Self::start_on(0, Arc::default()).await
    }

    async fn start_on(port: u16, messages: Arc<Mutex<Vec<Received>>>) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("SMTP sink binds");
        let port = listener.local_addr().unwrap().port();
        let kept = messages.clone();
        let sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let open = sessions.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                let handle = tokio::spawn(async move {
                    let _ = session(stream, kept).await;
                });
                open.lock().unwrap().push(handle.abort_handle());
            }
        });
        SmtpSink {
            port,
            messages,
            task,
            sessions,
        }
    }

    /// Stops listening and closes the open sessions: connections are refused
    /// until `restart`.
    fn stop(&self) {
        self.task.abort();
        for session in self.sessions.lock().unwrap().drain(..) {
            session.abort();
        }
    }

    async fn restart(self) -> SmtpSink {
        self.stop();
        let _ = (&mut { self.task }).await;
        Self::start_on(self.port, self.messages).await
    }

    fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    messages: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("EHLO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if command.starts_with("RCPT TO:") {
            let address = line.trim_end()[8..]
                .trim()
                .trim_matches(|c| c == '<' || c == '>');
            recipients.push(address.to_string());
            write.write_all(b"250 OK\r\n").await?;
        } else if command == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut body = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                body.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            messages.lock().unwrap().push(Received {
                recipients: std::mem::take(&mut recipients),
                data: body,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}

/// Decodes base64 (the standard alphabet; whitespace ignored).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

fn quoted_printable_decode(text: &str) -> String {
    let bytes = text.replace("=\r\n", "").replace("=\n", "").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
            if let Ok(byte) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())]).unwrap_or(""),
                16,
            ) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 body")
}

/// An RFC 2047 header value (`=?utf-8?b?…?=` words), decoded: the space
/// between two encoded words is dropped, any other kept.
fn decode_header(value: &str) -> String {
    let mut decoded = String::new();
    let mut previous_encoded = None;
    for word in value.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        let encoded = word.ends_with("?=")
            && (lower.starts_with("=?utf-8?b?") || lower.starts_with("=?utf-8?q?"));
        if previous_encoded.is_some() && !(encoded && previous_encoded == Some(true)) {
            decoded.push(' ');
        }
        if !encoded {
            decoded.push_str(word);
        } else if lower.starts_with("=?utf-8?b?") {
            decoded.push_str(
                &String::from_utf8(base64_decode(&word[10..word.len() - 2])).expect("UTF-8"),
            );
        } else {
            decoded.push_str(&quoted_printable_decode(
                &word[10..word.len() - 2].replace('_', " "),
            ));
        }
        previous_encoded = Some(encoded);
    }
    decoded
}

/// A received message: its decoded subject and its parts by content type.
struct Parsed {
    subject: String,
    parts: Vec<(String, String)>,
}

fn header(block: &str, name: &str) -> Option<String> {
    let unfolded = block.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

fn parse(message: &Received) -> Parsed {
    let (head, body) = message.data.split_once("\r\n\r\n").expect("headers");
    let subject = decode_header(&header(head, "Subject").expect("a subject"));
    let content_type = header(head, "Content-Type").expect("a content type");
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"')
        .to_string();
    let mut parts = Vec::new();
    for part in body.split(&format!("--{boundary}")).skip(1) {
        let Some((part_head, part_body)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(kind) = header(part_head, "Content-Type") else {
            continue;
        };
        let encoding = header(part_head, "Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let text = match encoding.as_str() {
            "base64" => String::from_utf8(base64_decode(part_body)).expect("UTF-8 part"),
            "quoted-printable" => quoted_printable_decode(part_body),
            _ => part_body.to_string(),
        };
        let kind = kind.split(';').next().unwrap().trim().to_string();
        parts.push((kind, text));
    }
    Parsed { subject, parts }
}

impl Parsed {
    fn part(&self, kind: &str) -> &str {
        &self
            .parts
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} part in {:?}", self.parts))
            .1
    }
}

const OUTBOX: &str = "query($shop: ID!, $status: String) { emailOutbox(shopId: $shop, status: $status) {
    id recipient role language eventType subject paymentId status attempts nextAttemptAt lastError createdAt sentAt } }";

async fn outbox(app: &TestApp, status: Option<&str>) -> Vec<Value> {
    let response = app
        .graphql(OUTBOX, json!({ "shop": app.shop_id, "status": status }))
        .await;
    data(&response)["emailOutbox"].as_array().unwrap().clone()
}

fn smtp(port: u16) -> impl FnOnce(&mut caisse_infrastructure::Config) {
    move |config| {
        config.mail = MailConfig {
            mode: MailMode::Smtp,
            smtp_host: "127.0.0.1".to_string(),
            smtp_port: port,
            smtp_tls: SmtpTls::None,
            from: "Caisse <no-reply@caisse.example>".to_string(),
            ..MailConfig::default()
        };
    }
}

async fn buyer_and_merchant_emails_are_sent_over_smtp(backend: Backend) {
    let sink = SmtpSink::start().await;
    let Some(app) = caisse_tests::spawn_app_with(backend, smtp(sink.port)).await else {
        return;
    };

    // Merchant settings, checked field by field.
    let configure =
        "mutation($input: ConfigureMerchantEmailsInput!) { configureMerchantEmails(input: $input) {
        shopId addresses eventTypes shopDisplayName logoUrl } }";
    let response = app
        .graphql(
            configure,
            json!({ "input": { "shopId": app.shop_id, "addresses": ["orders@shop.example"], "eventTypes": ["payment.paid"] } }),
        )
        .await;
    assert_eq!(error_code(&response), "INVALID_NOTIFICATION_SETTING");
    assert_eq!(response["errors"][0]["extensions"]["field"], "eventTypes");
    let response = app
        .graphql(
            configure,
            json!({ "input": { "shopId": app.shop_id, "addresses": ["orders@shop.example", "boss@shop.example"],
                "eventTypes": ["payment.refunded"], "shopDisplayName": "Boutique <Zoé>",
                "logoUrl": "https://cdn.shop.example/logo.png" } }),
        )
        .await;
    let settings = &data(&response)["configureMerchantEmails"];
    assert_eq!(
        settings["addresses"],
        json!(["orders@shop.example", "boss@shop.example"])
    );
    let response = app
        .graphql(
            "query($shop: ID!) { merchantEmailSettings(shopId: $shop) { addresses eventTypes shopDisplayName logoUrl } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["merchantEmailSettings"]["eventTypes"],
        json!(["payment.refunded"])
    );

    // An unknown language is refused by field.
    let reference = format!("ORD-DE-{}", next_reference_number());
    let mut input = payment_input("49.90", &reference);
    input["buyerEmail"] = json!("kunde@example.de");
    input["buyerLanguage"] = json!("jp");
    let response = app
        .graphql(caisse_tests::CREATE_PAYMENT, json!({ "input": input }))
        .await;
    assert_eq!(error_code(&response), "INVALID_LANGUAGE");
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "buyerLanguage"
    );

    // The buyer's confirmation, in German.
    input["buyerLanguage"] = json!("DE");
    let payment = app.create_payment(input).await;
    assert_eq!(payment["status"], "AUTHORISED", "{payment}");
    let payment_id = payment["id"].as_str().unwrap().to_string();
    let run = app.state.deliver_emails().await.unwrap();
    assert_eq!(run.sent, 1, "{run:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipients, ["kunde@example.de"]);
    assert!(!messages[0].data.contains("4970100000000006"));
    let parsed = parse(&messages[0]);
    assert!(
        parsed.subject.contains("Zahlungsbestätigung") && parsed.subject.contains(&reference),
        "{}",
        parsed.subject
    );
    let text = parsed.part("text/plain");
    for expected in [
        "Ihre Zahlung wurde angenommen.",
        reference.as_str(),
        "49,90 EUR",
        "Boutique <Zoé>",
        payment_id.as_str(),
        "Karte endend auf: 0006",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let html = parsed.part("text/html");
    assert!(html.contains("Boutique &lt;Zoé&gt;"), "{html}");
    assert!(html.contains("<img src=\"https://cdn.shop.example/logo.png\""));
    assert!(!html.contains("<Zoé>"));
    for (_, part) in &parsed.parts {
        assert!(!part.contains("4970100000000006"));
    }

    // The refund: e-mailed to both merchant addresses (in French).
    app.run_remittance().await;
    let response = app
        .graphql(
            "mutation($id: ID!) { refundPayment(id: $id, amount: \"10.00\") { refundedAmount } }",
            json!({ "id": payment_id }),
        )
        .await;
    data(&response);
    let run = app.state.deliver_emails().await.unwrap();
    assert_eq!(run.sent, 2, "{run:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);
    let mut recipients: Vec<String> = messages[1..]
        .iter()
        .flat_map(|m| m.recipients.clone())
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["boss@shop.example", "orders@shop.example"]);
    let refund = parse(&messages[1]);
    assert!(
        refund.subject.contains("Paiement remboursé"),
        "{}",
        refund.subject
    );
    assert!(refund.part("text/plain").contains("10,00 EUR"));

    let emails = outbox(&app, None).await;
    assert_eq!(emails.len(), 3, "{emails:?}");
    assert!(emails
        .iter()
        .all(|e| e["status"] == "SENT" && e["attempts"] == 1));
    let buyer: Vec<&Value> = emails.iter().filter(|e| e["role"] == "BUYER").collect();
    assert_eq!(buyer.len(), 1);
    assert_eq!(buyer[0]["language"], "de");
    assert_eq!(buyer[0]["eventType"], "payment.authorised");
    assert_eq!(buyer[0]["paymentId"], payment_id.as_str());
    assert!(buyer[0]["sentAt"].is_string());
    // Another pass sends nothing twice.
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 0);

    // With the server down the e-mail stays PENDING with the error, then
    // goes once the retry delay has passed and the server is back.
    sink.stop();
    let mut input = payment_input("12.00", &format!("ORD-EN-{}", next_reference_number()));
    input["buyerLanguage"] = json!("en");
    app.create_payment(input).await;
    let run = app.state.deliver_emails().await.unwrap();
    assert_eq!(run.retrying, 1, "{run:?}");
    let pending = outbox(&app, Some("PENDING")).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["attempts"], 1);
    assert_eq!(pending[0]["language"], "en");
    assert!(pending[0]["lastError"].as_str().unwrap().contains("SMTP"));
    let sink = sink.restart().await;
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 0);
    app.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 1);
    let messages = sink.messages();
    assert_eq!(messages.len(), 4);
    assert!(parse(&messages[3]).subject.contains("Payment confirmation"));
    assert!(outbox(&app, Some("PENDING")).await.is_empty());
    assert_eq!(outbox(&app, Some("SENT")).await.len(), 4);

    // Another merchant sees none of it.
    let other = app.other_merchant().await;
    let response = app
        .graphql_as(
            &other.test_key,
            OUTBOX,
            json!({ "shop": app.shop_id, "status": null }),
        )
        .await;
    assert_eq!(error_code(&response), "SHOP_NOT_FOUND");
}

mod buyer_and_merchant_emails_are_sent_over_smtp {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::buyer_and_merchant_emails_are_sent_over_smtp(caisse_tests::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::buyer_and_merchant_emails_are_sent_over_smtp(caisse_tests::Backend::Postgres).await;
    }
}

async fn directory_mode_writes_eml_files(app: TestApp) {
    // The default: no SMTP, files under data_dir/mail; French without a language.
    let payment = app
        .create_payment(payment_input(
            "20.00",
            &format!("ORD-DIR-{}", next_reference_number()),
        ))
        .await;
    assert_eq!(payment["status"], "AUTHORISED", "{payment}");
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 1);
    let emails = outbox(&app, Some("SENT")).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["language"], "fr");
    let path = app
        .data_dir
        .path()
        .join("mail")
        .join(format!("{}.eml", emails[0]["id"].as_str().unwrap()));
    let written = std::fs::read_to_string(&path).expect("the .eml file");
    let parsed = parse(&Received {
        recipients: vec![],
        data: written.clone(),
    });
    assert!(
        parsed.subject.contains("Confirmation de paiement"),
        "{}",
        parsed.subject
    );
    assert!(parsed.part("text/plain").contains("20,00 EUR"));
    assert!(parsed
        .part("text/html")
        .contains("Votre paiement a bien été accepté."));
    assert!(written.contains("To: buyer@example.com"), "{written}");

    // The bodies live apart from the sending state (`email_bodies`), one per
    // e-mail. A pass dispatched again (its commit lost in a crash: here the
    // dispatcher's checkpoint moved back to the start of the log) sends again
    // (at least once) but writes nothing twice and leaves no body without
    // its e-mail.
    let counts = |app: &TestApp| {
        let db = app.state.db().clone();
        async move {
            let row = db
                .fetch_optional(
                    "SELECT (SELECT COUNT(*) FROM email_outbox) AS emails,
                            (SELECT COUNT(*) FROM email_bodies) AS bodies,
                            (SELECT COUNT(*) FROM email_bodies b
                              WHERE NOT EXISTS (SELECT 1 FROM email_outbox e WHERE e.email_id = b.email_id)) AS orphans",
                    &[],
                )
                .await
                .unwrap()
                .unwrap();
            (row.int("emails"), row.int("bodies"), row.int("orphans"))
        }
    };
    assert_eq!(counts(&app).await, (1, 1, 0));
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 0);
    app.state
        .db()
        .execute(
            "UPDATE notification_dispatch SET tx_id = 0, global_position = 0 WHERE name = 'emails'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 1);
    assert_eq!(counts(&app).await, (1, 1, 0));
    assert_eq!(outbox(&app, Some("SENT")).await.len(), 1);
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 0);
}
caisse_tests::both_backends!(
    directory_mode_writes_eml_files,
    super::directory_mode_writes_eml_files
);

/// Two `caisse serve` on one database dispatch at the same time: one pass
/// holds the log (the lease of the dispatcher's row), so each e-mail is
/// written to `mail/` and to the outbox once.
async fn two_dispatchers_send_each_email_once(app: TestApp) {
    let second = app.second_server(|_| {}).await;
    for _ in 0..6 {
        app.create_payment(payment_input(
            "5.00",
            &format!("ORD-TWO-MAIL-{}", next_reference_number()),
        ))
        .await;
    }
    crate::webhooks::await_views(&app).await;
    let (first, other) = tokio::join!(app.state.deliver_emails(), second.state.deliver_emails());
    let (first, other) = (first.unwrap(), other.unwrap());
    // Whatever the loser's pass left, a last pass sends.
    let last = app.state.deliver_emails().await.unwrap();
    assert_eq!(
        first.sent + other.sent + last.sent,
        6,
        "{first:?} {other:?}"
    );
    let files = std::fs::read_dir(app.data_dir.path().join("mail"))
        .unwrap()
        .count();
    assert_eq!(files, 6);
    assert_eq!(outbox(&app, Some("SENT")).await.len(), 6);
}
caisse_tests::both_backends!(
    two_dispatchers_send_each_email_once,
    super::two_dispatchers_send_each_email_once
);

async fn merchant_language_and_deferred_authorisation(app: TestApp) {
    // The merchant's e-mails in the shop's language (English here); an unknown
    // one is refused by field and changes nothing.
    let configure =
        "mutation($input: ConfigureMerchantEmailsInput!) { configureMerchantEmails(input: $input) {
        addresses language } }";
    let response = app
        .graphql(
            configure,
            json!({ "input": { "shopId": app.shop_id, "addresses": ["orders@shop.example"],
                "eventTypes": ["payment.authorised"], "language": "ja" } }),
        )
        .await;
    assert_eq!(error_code(&response), "INVALID_NOTIFICATION_SETTING");
    assert_eq!(response["errors"][0]["extensions"]["field"], "language");
    let response = app
        .graphql(
            "query($shop: ID!) { merchantEmailSettings(shopId: $shop) { language } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert!(data(&response)["merchantEmailSettings"].is_null());
    let response = app
        .graphql(
            configure,
            json!({ "input": { "shopId": app.shop_id, "addresses": ["orders@shop.example"],
                "eventTypes": ["payment.authorised"], "language": "EN" } }),
        )
        .await;
    assert_eq!(data(&response)["configureMerchantEmails"]["language"], "en");

    // A deferred payment beyond the authorisation validity: nothing is
    // authorised at payment time, so nobody is told yet.
    let mut input = payment_input("60.00", &format!("ORD-DEF-{}", next_reference_number()));
    input["captureDelayDays"] = json!(20);
    input["buyerEmail"] = json!("comprador@example.es");
    input["buyerLanguage"] = json!("es");
    let created = app.create_payment(input).await;
    assert_eq!(created["status"], "WAITING_AUTHORISATION", "{created}");
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 0);

    // The day before the capture, the authorisation is granted: the buyer gets
    // the confirmation in Spanish, the merchant the notice in English.
    app.clock
        .set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 21, 0, 0, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("AUTHORISE_DEFERRED"), Some(&1), "{run:?}");
    assert_eq!(app.state.deliver_emails().await.unwrap().sent, 2);
    let emails = outbox(&app, Some("SENT")).await;
    let by_role = |role: &str| {
        emails
            .iter()
            .find(|e| e["role"] == role)
            .unwrap_or_else(|| panic!("no {role} e-mail in {emails:?}"))
            .clone()
    };
    let buyer = by_role("BUYER");
    assert_eq!(buyer["recipient"], "comprador@example.es");
    assert_eq!(buyer["language"], "es");
    assert_eq!(buyer["paymentId"], created["id"]);
    let merchant = by_role("MERCHANT");
    assert_eq!(merchant["language"], "en");
    assert!(
        merchant["subject"]
            .as_str()
            .unwrap()
            .contains("Payment authorised"),
        "{merchant}"
    );
    let read = |email: &Value| {
        let path = app
            .data_dir
            .path()
            .join("mail")
            .join(format!("{}.eml", email["id"].as_str().unwrap()));
        let written = std::fs::read_to_string(path).expect("the .eml file");
        parse(&Received {
            recipients: vec![],
            data: written,
        })
    };
    let buyer_mail = read(&buyer);
    assert!(buyer_mail.part("text/plain").contains("60,00 EUR"));
    assert!(
        buyer_mail.subject.contains("Confirmación de pago"),
        "{}",
        buyer_mail.subject
    );
    assert!(read(&merchant).part("text/plain").contains("60.00 EUR"));
}
caisse_tests::both_backends!(
    merchant_language_and_deferred_authorisation,
    super::merchant_language_and_deferred_authorisation
);

// STARTTLS, SMTPS (implicit TLS) and AUTH against an in-process TLS SMTP
// server: certificates made at test time with rcgen, TLS by tokio-rustls
// (ring, like the rest of the workspace).

use caisse_infrastructure::config::Secret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

const SMTP_USER: &str = "caisse";
const SMTP_PASSWORD: &str = "s3cret-relay";

/// A server certificate for `localhost` and the PEM a client must trust for it.
struct TestPki {
    /// What `smtp_ca_file` points at.
    trusted_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// A private CA and a `localhost` certificate it signed: the CA is trusted.
    fn private_ca() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Caisse test SMTP CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        TestPki {
            trusted_pem: ca.pem(),
            server: Self::server(certificate.der().clone(), &key),
        }
    }

    /// A self-signed `localhost` certificate (a relay's own): itself trusted.
    fn self_signed() -> TestPki {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        TestPki {
            trusted_pem: cert.pem(),
            server: Self::server(cert.der().clone(), &signing_key),
        }
    }

    fn server(
        certificate: CertificateDer<'static>,
        key: &rcgen::KeyPair,
    ) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
        Arc::new(config)
    }
}

/// How the TLS sink protects the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkTls {
    /// Plain text first; `STARTTLS` offered, and required before MAIL.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// Plain text only: no `STARTTLS` offered (a downgraded or old server).
    Plain,
}

/// What the TLS sink offers and accepts.
struct SinkSetup {
    tls: SinkTls,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The AUTH mechanisms offered (`PLAIN`, `LOGIN`); AUTH is required before
    /// MAIL when there are any.
    mechanisms: Vec<&'static str>,
}

/// A message the TLS sink received, and how it came.
#[derive(Debug, Clone)]
struct Delivered {
    message: Received,
    /// Over TLS (after STARTTLS, or implicit).
    tls: bool,
    /// The user that authenticated, if any.
    user: Option<String>,
}

/// One AUTH exchange: the user given, over TLS or not, accepted or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthAttempt {
    user: String,
    tls: bool,
    accepted: bool,
}

#[derive(Default)]
struct SinkRecord {
    delivered: Vec<Delivered>,
    auth: Vec<AuthAttempt>,
}

/// An SMTP server like `SmtpSink` that also speaks TLS (STARTTLS or implicit)
/// and checks AUTH PLAIN / LOGIN against `SMTP_USER` / `SMTP_PASSWORD`.
struct TlsSmtpSink {
    port: u16,
    record: Arc<Mutex<SinkRecord>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsSmtpSink {
    async fn start(tls: SinkTls, pki: &TestPki, mechanisms: &[&'static str]) -> TlsSmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("TLS SMTP sink binds");
        let port = listener.local_addr().unwrap().port();
        let setup = Arc::new(SinkSetup {
            tls,
            acceptor: tokio_rustls::TlsAcceptor::from(pki.server.clone()),
            mechanisms: mechanisms.to_vec(),
        });
        let record = Arc::new(Mutex::new(SinkRecord::default()));
        let kept = record.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (setup, kept) = (setup.clone(), kept.clone());
                tokio::spawn(async move {
                    let _ = tls_session(stream, &setup, &kept).await;
                });
            }
        });
        TlsSmtpSink { port, record, task }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.record.lock().unwrap().delivered.clone()
    }

    fn auth_attempts(&self) -> Vec<AuthAttempt> {
        self.record.lock().unwrap().auth.clone()
    }
}

impl Drop for TlsSmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one SMTP session knows; all forgotten after STARTTLS (RFC 3207).
#[derive(Default)]
struct SinkSession {
    tls: bool,
    user: Option<String>,
    recipients: Vec<String>,
}

enum SinkNext {
    Closed,
    StartTls,
}

async fn tls_session(
    stream: tokio::net::TcpStream,
    setup: &SinkSetup,
    record: &Mutex<SinkRecord>,
) -> std::io::Result<()> {
    if setup.tls == SinkTls::Implicit {
        let mut stream = BufReader::new(setup.acceptor.accept(stream).await?);
        reply(&mut stream, "220 sink ESMTP\r\n").await?;
        let mut session = SinkSession {
            tls: true,
            ..SinkSession::default()
        };
        tls_sink_commands(&mut stream, setup, &mut session, record).await?;
        return Ok(());
    }
    let mut stream = BufReader::new(stream);
    reply(&mut stream, "220 sink ESMTP\r\n").await?;
    let mut session = SinkSession::default();
    if let SinkNext::StartTls = tls_sink_commands(&mut stream, setup, &mut session, record).await? {
        // The client waits for the 220 before its handshake: nothing is buffered.
        assert!(
            stream.buffer().is_empty(),
            "bytes sent before the handshake"
        );
        let mut stream = BufReader::new(setup.acceptor.accept(stream.into_inner()).await?);
        let mut session = SinkSession {
            tls: true,
            ..SinkSession::default()
        };
        tls_sink_commands(&mut stream, setup, &mut session, record).await?;
    }
    Ok(())
}

async fn reply<S: AsyncWrite + Unpin>(stream: &mut S, text: &str) -> std::io::Result<()> {
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await
}

/// One line from the client without its line end; `None` at the end.
async fn read_command<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The SMTP commands of a session, until QUIT, the end, or STARTTLS accepted.
async fn tls_sink_commands<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    setup: &SinkSetup,
    session: &mut SinkSession,
    record: &Mutex<SinkRecord>,
) -> std::io::Result<SinkNext> {
    let starttls_offered = setup.tls == SinkTls::Starttls && !session.tls;
    loop {
        let Some(line) = read_command(stream).await? else {
            return Ok(SinkNext::Closed);
        };
        let command = line.to_ascii_uppercase();
        if command.starts_with("EHLO") {
            let mut capabilities = vec!["sink".to_string(), "8BITMIME".to_string()];
            if starttls_offered {
                capabilities.push("STARTTLS".to_string());
            }
            if !setup.mechanisms.is_empty() {
                capabilities.push(format!("AUTH {}", setup.mechanisms.join(" ")));
            }
            let last = capabilities.len() - 1;
            let mut answer = String::new();
            for (index, capability) in capabilities.iter().enumerate() {
                let separator = if index == last { ' ' } else { '-' };
                answer.push_str(&format!("250{separator}{capability}\r\n"));
            }
            reply(stream, &answer).await?;
        } else if command == "STARTTLS" {
            if !starttls_offered {
                reply(stream, "502 5.5.1 STARTTLS not offered\r\n").await?;
                continue;
            }
            reply(stream, "220 2.0.0 Ready to start TLS\r\n").await?;
            return Ok(SinkNext::StartTls);
        } else if command.starts_with("AUTH ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mechanism = words
                .get(1)
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_default();
            if !setup.mechanisms.contains(&mechanism.as_str()) {
                reply(stream, "504 5.5.4 Unrecognized authentication type\r\n").await?;
                continue;
            }
            let credentials = if mechanism == "PLAIN" {
                let response = match words.get(2) {
                    Some(initial) => initial.to_string(),
                    None => {
                        reply(stream, "334 \r\n").await?;
                        let Some(response) = read_command(stream).await? else {
                            return Ok(SinkNext::Closed);
                        };
                        response
                    }
                };
                // authzid NUL authcid NUL password
                let decoded = utf8(base64_decode(&response));
                let mut fields = decoded.split('\0').skip(1);
                match (fields.next(), fields.next()) {
                    (Some(user), Some(password)) => Some((user.to_string(), password.to_string())),
                    _ => None,
                }
            } else {
                let user = match words.get(2) {
                    Some(initial) => utf8(base64_decode(initial)),
                    None => {
                        reply(stream, "334 VXNlcm5hbWU6\r\n").await?;
                        let Some(user) = read_command(stream).await? else {
                            return Ok(SinkNext::Closed);
                        };
                        utf8(base64_decode(&user))
                    }
                };
                reply(stream, "334 UGFzc3dvcmQ6\r\n").await?;
                let Some(password) = read_command(stream).await? else {
                    return Ok(SinkNext::Closed);
                };
                Some((user, utf8(base64_decode(&password))))
            };
            let Some((user, password)) = credentials else {
                reply(stream, "501 5.5.2 Malformed authentication\r\n").await?;
                continue;
            };
            let accepted = user == SMTP_USER && password == SMTP_PASSWORD;
            record.lock().unwrap().auth.push(AuthAttempt {
                user: user.clone(),
                tls: session.tls,
                accepted,
            });
            if accepted {
                session.user = Some(user);
                reply(stream, "235 2.7.0 Authentication successful\r\n").await?;
            } else {
                reply(stream, "535 5.7.8 Authentication credentials invalid\r\n").await?;
            }
        } else if command.starts_with("MAIL FROM:") {
            if setup.tls == SinkTls::Starttls && !session.tls {
                reply(stream, "530 5.7.0 Must issue a STARTTLS command first\r\n").await?;
            } else if !setup.mechanisms.is_empty() && session.user.is_none() {
                reply(stream, "530 5.7.0 Authentication required\r\n").await?;
            } else {
                reply(stream, "250 OK\r\n").await?;
            }
        } else if command.starts_with("RCPT TO:") {
            let address = line[8..].trim().trim_matches(|c| c == '<' || c == '>');
            session.recipients.push(address.to_string());
            reply(stream, "250 OK\r\n").await?;
        } else if command == "DATA" {
            reply(stream, "354 go on\r\n").await?;
            let mut body = String::new();
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await? == 0 {
                    return Ok(SinkNext::Closed);
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                body.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            record.lock().unwrap().delivered.push(Delivered {
                message: Received {
                    recipients: std::mem::take(&mut session.recipients),
                    data: body,
                },
                tls: session.tls,
                user: session.user.clone(),
            });
            reply(stream, "250 queued\r\n").await?;
        } else if command == "QUIT" {
            reply(stream, "221 bye\r\n").await?;
            return Ok(SinkNext::Closed);
        } else {
            reply(stream, "250 OK\r\n").await?;
        }
    }
}

/// `smtp(port)` to `localhost` with `tls`, `SMTP_USER` and `password`; when
/// `trusted_pem` is given it is written to the data directory and becomes
/// `smtp_ca_file`.
fn smtp_over_tls(
    port: u16,
    tls: SmtpTls,
    trusted_pem: Option<String>,
    password: &str,
) -> impl FnOnce(&mut caisse_infrastructure::Config) {
    let password = password.to_string();
    move |config| {
        smtp(port)(config);
        config.mail.smtp_host = "localhost".to_string();
        config.mail.smtp_tls = tls;
        config.mail.smtp_username = Some(SMTP_USER.to_string());
        config.mail.smtp_password = Some(Secret::new(password));
        if let Some(pem) = trusted_pem {
            let path = config.data_dir.join("smtp-ca.pem");
            std::fs::write(&path, pem).expect("CA file written");
            config.mail.smtp_ca_file = Some(path);
        }
    }
}

/// Authorises a payment for `buyer@example.com`; returns its order reference.
async fn authorise_a_payment(app: &TestApp) -> String {
    let reference = format!("ORD-TLS-{}", next_reference_number());
    let payment = app.create_payment(payment_input("31.40", &reference)).await;
    assert_eq!(payment["status"], "AUTHORISED", "{payment}");
    reference
}

/// The e-mail was not sent: PENDING after one attempt, with the error.
async fn pending_with_error(app: &TestApp) -> String {
    let run = app.state.deliver_emails().await.unwrap();
    assert_eq!((run.sent, run.retrying), (0, 1), "{run:?}");
    let emails = outbox(app, None).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["status"], "PENDING", "{emails:?}");
    assert_eq!(emails[0]["attempts"], 1, "{emails:?}");
    assert!(emails[0]["sentAt"].is_null(), "{emails:?}");
    emails[0]["lastError"]
        .as_str()
        .expect("an error on the row")
        .to_string()
}

/// Sent once over TLS as `SMTP_USER`, and SENT in the outbox.
async fn sent_over_tls(app: &TestApp, sink: &TlsSmtpSink, reference: &str) {
    let run = app.state.deliver_emails().await.unwrap();
    assert_eq!(run.sent, 1, "{run:?} {:?}", outbox(app, None).await);
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0].tls, "received in clear");
    assert_eq!(delivered[0].user.as_deref(), Some(SMTP_USER));
    assert_eq!(delivered[0].message.recipients, ["buyer@example.com"]);
    let parsed = parse(&delivered[0].message);
    assert!(parsed.subject.contains(reference), "{}", parsed.subject);
    assert!(parsed.part("text/plain").contains("31,40 EUR"));
    // The credentials went over TLS only, once.
    assert_eq!(
        sink.auth_attempts(),
        [AuthAttempt {
            user: SMTP_USER.to_string(),
            tls: true,
            accepted: true
        }]
    );
    let emails = outbox(app, None).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["status"], "SENT");
    assert_eq!(emails[0]["attempts"], 1);
    assert!(emails[0]["lastError"].is_null());
}

async fn starttls_with_auth_sends_over_tls(backend: Backend) {
    // A private CA trusted through smtp_ca_file; AUTH PLAIN (lettre's first choice).
    let pki = TestPki::private_ca();
    let sink = TlsSmtpSink::start(SinkTls::Starttls, &pki, &["PLAIN", "LOGIN"]).await;
    let configure = smtp_over_tls(
        sink.port,
        SmtpTls::Starttls,
        Some(pki.trusted_pem.clone()),
        SMTP_PASSWORD,
    );
    let Some(app) = caisse_tests::spawn_app_with(backend, configure).await else {
        return;
    };
    let reference = authorise_a_payment(&app).await;
    sent_over_tls(&app, &sink, &reference).await;
}

async fn implicit_tls_sends_over_tls(backend: Backend) {
    // A self-signed relay certificate trusted through smtp_ca_file; AUTH LOGIN only.
    let pki = TestPki::self_signed();
    let sink = TlsSmtpSink::start(SinkTls::Implicit, &pki, &["LOGIN"]).await;
    let configure = smtp_over_tls(
        sink.port,
        SmtpTls::Tls,
        Some(pki.trusted_pem.clone()),
        SMTP_PASSWORD,
    );
    let Some(app) = caisse_tests::spawn_app_with(backend, configure).await else {
        return;
    };
    let reference = authorise_a_payment(&app).await;
    sent_over_tls(&app, &sink, &reference).await;
}

async fn a_wrong_smtp_password_leaves_the_email_pending(backend: Backend) {
    let pki = TestPki::private_ca();
    let sink = TlsSmtpSink::start(SinkTls::Starttls, &pki, &["PLAIN", "LOGIN"]).await;
    let configure = smtp_over_tls(
        sink.port,
        SmtpTls::Starttls,
        Some(pki.trusted_pem.clone()),
        "not-the-password",
    );
    let Some(app) = caisse_tests::spawn_app_with(backend, configure).await else {
        return;
    };
    authorise_a_payment(&app).await;
    let error = pending_with_error(&app).await;
    // lettre: "permanent error (535): " then the server's text.
    assert!(error.contains("permanent error (535)"), "{error}");
    assert!(
        error.contains("Authentication credentials invalid"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");
    assert!(sink.delivered().is_empty());
    assert_eq!(
        sink.auth_attempts(),
        [AuthAttempt {
            user: SMTP_USER.to_string(),
            tls: true,
            accepted: false
        }]
    );
}

async fn an_untrusted_smtp_certificate_is_refused(backend: Backend) {
    // The relay's self-signed certificate, without smtp_ca_file: not trusted.
    let pki = TestPki::self_signed();
    let sink = TlsSmtpSink::start(SinkTls::Starttls, &pki, &["PLAIN", "LOGIN"]).await;
    let configure = smtp_over_tls(sink.port, SmtpTls::Starttls, None, SMTP_PASSWORD);
    let Some(app) = caisse_tests::spawn_app_with(backend, configure).await else {
        return;
    };
    authorise_a_payment(&app).await;
    let error = pending_with_error(&app).await;
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(sink.delivered().is_empty());
    assert!(sink.auth_attempts().is_empty(), "credentials sent");
}

async fn starttls_is_required_never_downgraded(backend: Backend) {
    // A server that does not offer STARTTLS (but would take AUTH in clear).
    let pki = TestPki::private_ca();
    let sink = TlsSmtpSink::start(SinkTls::Plain, &pki, &["PLAIN", "LOGIN"]).await;
    let configure = smtp_over_tls(
        sink.port,
        SmtpTls::Starttls,
        Some(pki.trusted_pem.clone()),
        SMTP_PASSWORD,
    );
    let Some(app) = caisse_tests::spawn_app_with(backend, configure).await else {
        return;
    };
    authorise_a_payment(&app).await;
    let error = pending_with_error(&app).await;
    assert!(error.contains("STARTTLS is not supported"), "{error}");
    assert!(sink.delivered().is_empty());
    assert!(sink.auth_attempts().is_empty(), "credentials sent in clear");
}

macro_rules! tls_tests_on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(caisse_tests::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(caisse_tests::Backend::Postgres).await;
                }
            }
        )*
    };
}

tls_tests_on_both_backends!(
    starttls_with_auth_sends_over_tls,
    implicit_tls_sends_over_tls,
    a_wrong_smtp_password_leaves_the_email_pending,
    an_untrusted_smtp_certificate_is_refused,
    starttls_is_required_never_downgraded,
);

/// Starts the application on a fresh SQLite database with `smtp_ca_file`;
/// returns the startup error.
async fn startup_error_with_ca_file(
    data_dir: &std::path::Path,
    ca_file: std::path::PathBuf,
) -> String {
    let mut config = caisse_infrastructure::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(Secret::new(format!(
            "sqlite://{}",
            data_dir.join("caisse.db").display()
        ))),
        data_dir: data_dir.to_path_buf(),
        ..caisse_infrastructure::Config::default()
    };
    config.scheduler.enabled = false;
    smtp(2525)(&mut config);
    config.mail.smtp_tls = SmtpTls::Starttls;
    config.mail.smtp_ca_file = Some(ca_file);
    let clock = Arc::new(caisse_application::ports::ManualClock::new(
        caisse_tests::test_start(),
    ));
    match caisse_api::Application::build_with_clock(config, clock).await {
        Ok(_) => panic!("the server started with a bad smtp_ca_file"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_smtp_ca_file_stops_the_server_at_startup() {
    let data_dir = tempfile::tempdir().unwrap();
    let missing = data_dir.path().join("no-such-ca.pem");
    let error = startup_error_with_ca_file(data_dir.path(), missing.clone()).await;
    assert!(error.contains("mail.smtp_ca_file"), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");

    let not_pem = data_dir.path().join("key.pem");
    std::fs::write(
        &not_pem,
        "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = startup_error_with_ca_file(data_dir.path(), not_pem.clone()).await;
    assert!(error.contains("mail.smtp_ca_file"), "{error}");
    assert!(error.contains(&not_pem.display().to_string()), "{error}");
    assert!(error.contains("no PEM certificate"), "{error}");
}
