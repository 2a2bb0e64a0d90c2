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
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = session(stream, kept).await;
                });
            }
        });
        SmtpSink {
            port,
            messages,
            task,
        }
    }

    /// Stops listening: connections are refused until `restart`.
    fn stop(&self) {
        self.task.abort();
    }

    async fn restart(self) -> SmtpSink {
        self.task.abort();
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
}
caisse_tests::both_backends!(
    directory_mode_writes_eml_files,
    super::directory_mode_writes_eml_files
);
