//! Acquirers: the test-environment simulator with its documented test cards
//! (docs/test-cards.md), and the live placeholder that refuses until a real
//! connector exists.

use std::time::Duration;

use async_trait::async_trait;
use caisse_application::ports::{Acquirer, AuthorisationPurpose, AuthorisationRequest};
use caisse_domain::acquirer::{SIMULATOR_CONTRACT, UNCONFIGURED_CONTRACT};
use caisse_domain::payment::{Authorisation, AuthorisationOutcome, Refusal, RefusalCategory};
use rand::Rng;

/// The simulator's behaviour for one card number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedOutcome {
    Accept,
    Decline {
        code: &'static str,
        message: &'static str,
    },
    TechnicalError,
    Timeout,
    /// Accepted at payment time (authorisation or card check), declined when a
    /// deferred payment is authorised later: funds gone by then.
    DeclineDeferred {
        code: &'static str,
        message: &'static str,
    },
}

/// The test cards. Any other valid card is accepted in test mode.
pub const TEST_CARDS: &[(&str, SimulatedOutcome)] = &[
    ("4970100000000006", SimulatedOutcome::Accept),
    (
        "4970100000000014",
        SimulatedOutcome::Decline {
            code: "05",
            message: "do not honour",
        },
    ),
    (
        "4970100000000022",
        SimulatedOutcome::Decline {
            code: "51",
            message: "insufficient funds",
        },
    ),
    (
        "4970100000000030",
        SimulatedOutcome::Decline {
            code: "54",
            message: "expired card",
        },
    ),
    (
        "4970100000000048",
        SimulatedOutcome::Decline {
            code: "59",
            message: "suspected fraud",
        },
    ),
    ("4970100000000055", SimulatedOutcome::TechnicalError),
    ("4970100000000063", SimulatedOutcome::Timeout),
    (
        "4970100000000071",
        SimulatedOutcome::DeclineDeferred {
            code: "51",
            message: "insufficient funds",
        },
    ),
];

pub fn simulated_outcome(pan_digits: &str) -> SimulatedOutcome {
    TEST_CARDS
        .iter()
        .find(|(number, _)| *number == pan_digits)
        .map(|(_, outcome)| *outcome)
        .unwrap_or(SimulatedOutcome::Accept)
}

pub struct SimulatorAcquirer {
    /// How long the simulated issuer stalls before the timeout card gives up.
    pub timeout: Duration,
}

impl Default for SimulatorAcquirer {
    fn default() -> Self {
        SimulatorAcquirer {
            timeout: Duration::from_millis(200),
        }
    }
}

#[async_trait]
impl Acquirer for SimulatorAcquirer {
    async fn authorise(&self, request: AuthorisationRequest<'_>) -> AuthorisationOutcome {
        let outcome = match simulated_outcome(request.pan.expose_digits()) {
            SimulatedOutcome::DeclineDeferred { code, message }
                if request.purpose == AuthorisationPurpose::DeferredPayment =>
            {
                SimulatedOutcome::Decline { code, message }
            }
            outcome => outcome,
        };
        match outcome {
            // Deferred-decline cards are accepted for anything but the deferred authorisation.
            SimulatedOutcome::Accept | SimulatedOutcome::DeclineDeferred { .. } => {
                let mut rng = rand::thread_rng();
                AuthorisationOutcome::Approved(Authorisation {
                    authorisation_code: format!("{:06}", rng.gen_range(0..1_000_000)),
                    acquirer_reference: format!(
                        "SIM{:012}",
                        rng.gen_range(0..1_000_000_000_000u64)
                    ),
                })
            }
            SimulatedOutcome::Decline { code, message } => {
                AuthorisationOutcome::Declined(Refusal {
                    code: code.to_string(),
                    message: message.to_string(),
                    category: RefusalCategory::IssuerDeclined,
                })
            }
            SimulatedOutcome::TechnicalError => AuthorisationOutcome::Declined(Refusal {
                code: "96".to_string(),
                message: "system malfunction at the acquirer".to_string(),
                category: RefusalCategory::Technical,
            }),
            SimulatedOutcome::Timeout => {
                tokio::time::sleep(self.timeout).await;
                AuthorisationOutcome::Declined(Refusal {
                    code: "91".to_string(),
                    message: "issuer unavailable: authorisation timed out".to_string(),
                    category: RefusalCategory::Technical,
                })
            }
        }
    }

    fn contract(&self) -> &str {
        SIMULATOR_CONTRACT
    }
}

/// Live mode until a real acquirer connector is configured: every payment is
/// refused with `ACQUIRER_NOT_CONFIGURED`, never simulated.
pub struct UnconfiguredAcquirer;

#[async_trait]
impl Acquirer for UnconfiguredAcquirer {
    async fn authorise(&self, _request: AuthorisationRequest<'_>) -> AuthorisationOutcome {
        AuthorisationOutcome::Declined(Refusal {
            code: "ACQUIRER_NOT_CONFIGURED".to_string(),
            message: "no acquirer contract is configured for live payments".to_string(),
            category: RefusalCategory::AcquirerNotConfigured,
        })
    }

    fn contract(&self) -> &str {
        UNCONFIGURED_CONTRACT
    }
}
