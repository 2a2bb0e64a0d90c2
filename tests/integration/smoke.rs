//! The shortest path a new merchant takes: create a payment and read it back.

use caisse_tests::{data, payment_input, TestApp};
use serde_json::json;

async fn create_then_read(app: TestApp) {
    let payment = app.create_payment(payment_input("49.90", "ORD-1")).await;
    assert_eq!(payment["status"], "AUTHORISED");
    assert_eq!(payment["amount"], "49.90");
    assert_eq!(payment["card"]["brand"], "CB");
    assert_eq!(payment["card"]["lastFour"], "0006");
    let response = app
        .graphql("query($id: ID!) { payment(id: $id) { id status history { type sequence } } }", json!({ "id": payment["id"] }))
        .await;
    let read = &data(&response)["payment"];
    assert_eq!(read["status"], "AUTHORISED");
    assert_eq!(read["history"][0]["type"], "PaymentAuthorised");
}

caisse_tests::both_backends!(create_then_read_works, super::create_then_read);
