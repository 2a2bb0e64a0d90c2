//! The 3-D Secure simulator of the test environment: answers by card number,
//! like the acquirer simulator (docs/test-cards.md), and an "unconfigured" server
//! for live mode until a real 3DS server contract is connected.

use async_trait::async_trait;
use caisse_application::ports::{ChallengeResult, ThreeDsAnswer, ThreeDsRequest, ThreeDsServer};
use caisse_domain::three_ds::{ThreeDsEnrolled, ThreeDsResult, ThreeDsStatus};

/// What the simulated directory and ACS do with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedAuthentication {
    /// Y without challenge.
    Frictionless,
    /// The issuer asks for a challenge; its result is posted later.
    Challenge,
    /// N without challenge: the issuer refuses the authentication.
    Failed,
    /// The card is not enrolled in 3-D Secure.
    NotEnrolled,
    /// The directory does not answer (U).
    DirectoryUnavailable,
    /// A: the issuer does not authenticate, the attempt is proven.
    Attempted,
}

/// The 3-D Secure test cards. Any other card authenticates frictionless.
pub const THREE_DS_TEST_CARDS: &[(&str, SimulatedAuthentication)] = &[
    ("4970100000000105", SimulatedAuthentication::Challenge),
    ("4970100000000113", SimulatedAuthentication::Failed),
    ("4970100000000121", SimulatedAuthentication::NotEnrolled),
    (
        "4970100000000139",
        SimulatedAuthentication::DirectoryUnavailable,
    ),
    ("4970100000000147", SimulatedAuthentication::Attempted),
];

pub fn simulated_authentication(pan_digits: &str) -> SimulatedAuthentication {
    THREE_DS_TEST_CARDS
        .iter()
        .find(|(number, _)| *number == pan_digits)
        .map(|(_, outcome)| *outcome)
        .unwrap_or(SimulatedAuthentication::Frictionless)
}

#[derive(Debug, Default)]
pub struct SimulatorThreeDsServer;

fn transaction_id() -> String {
    format!("3ds_sim_{}", uuid::Uuid::new_v4().simple())
}

#[async_trait]
impl ThreeDsServer for SimulatorThreeDsServer {
    async fn authenticate(&self, request: ThreeDsRequest<'_>) -> ThreeDsAnswer {
        use ThreeDsEnrolled::*;
        use ThreeDsStatus::*;
        let final_result = |enrolled, status, eci: Option<&str>, with_transaction: bool| {
            ThreeDsAnswer::Final(ThreeDsResult::new(
                enrolled,
                status,
                with_transaction.then(transaction_id),
                eci.map(str::to_string),
            ))
        };
        match simulated_authentication(request.pan.expose_digits()) {
            SimulatedAuthentication::Frictionless => {
                final_result(Enrolled, Authenticated, Some("05"), true)
            }
            SimulatedAuthentication::Challenge => ThreeDsAnswer::ChallengeRequired {
                transaction_id: transaction_id(),
            },
            SimulatedAuthentication::Failed => final_result(Enrolled, Failed, None, true),
            SimulatedAuthentication::NotEnrolled => {
                final_result(NotEnrolled, NotPerformed, None, false)
            }
            SimulatedAuthentication::DirectoryUnavailable => {
                final_result(Unknown, Unavailable, None, false)
            }
            SimulatedAuthentication::Attempted => {
                final_result(Enrolled, Attempted, Some("06"), true)
            }
        }
    }

    async fn complete_challenge(
        &self,
        transaction_id: &str,
        result: ChallengeResult,
    ) -> ThreeDsResult {
        let (status, eci) = match result {
            ChallengeResult::Success => (ThreeDsStatus::Authenticated, Some("05".to_string())),
            ChallengeResult::Failure => (ThreeDsStatus::Failed, None),
        };
        ThreeDsResult::new(
            ThreeDsEnrolled::Enrolled,
            status,
            Some(transaction_id.to_string()),
            eci,
        )
    }
}

/// Live mode until a 3DS server contract is configured: the directory is
/// unavailable, so live payments proceed without guarantee (UNKNOWN), as
/// they would during a directory outage.
#[derive(Debug, Default)]
pub struct UnconfiguredThreeDsServer;

#[async_trait]
impl ThreeDsServer for UnconfiguredThreeDsServer {
    async fn authenticate(&self, _request: ThreeDsRequest<'_>) -> ThreeDsAnswer {
        ThreeDsAnswer::Final(ThreeDsResult::new(
            ThreeDsEnrolled::Unknown,
            ThreeDsStatus::Unavailable,
            None,
            None,
        ))
    }

    async fn complete_challenge(
        &self,
        transaction_id: &str,
        _result: ChallengeResult,
    ) -> ThreeDsResult {
        ThreeDsResult::new(
            ThreeDsEnrolled::Unknown,
            ThreeDsStatus::Unavailable,
            Some(transaction_id.to_string()),
            None,
        )
    }
}
