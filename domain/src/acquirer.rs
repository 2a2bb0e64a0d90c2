//! Acquirer contracts: the name of the contract a payment was authorised under,
//! which its capture and refunds are remitted under (FEATURES CM-10).

/// The contract of the test-mode simulator.
pub const SIMULATOR_CONTRACT: &str = "SIMULATOR";

/// The contract of live mode while no acquirer is configured (ADR 0006): every
/// payment is refused under it, so nothing is ever remitted under it.
pub const UNCONFIGURED_CONTRACT: &str = "UNCONFIGURED";

/// The contract of payments and remittances recorded before contracts were: all of
/// them were test-mode simulator payments, live mode having refused every payment.
pub fn default_contract() -> String {
    SIMULATOR_CONTRACT.to_string()
}
