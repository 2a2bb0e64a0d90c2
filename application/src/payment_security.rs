//! What runs between a card's checks and its authorisation (RC-1..8, SE-1,
//! SE-2): the risk controls, the card outstanding, 3-D Secure and the guarantee
//! filter; and the completion or abandonment of a 3-D Secure challenge.

use std::sync::Arc;
use std::time::Duration;

use caisse_domain::payment::{
    AuthorisationOutcome, PaymentCommand, PaymentError, PaymentStatus, Refusal, RefusalCategory,
};
use caisse_domain::risk::{guarantee_check, ControlCheck, RiskAssessment, RiskControl};
use caisse_domain::three_ds::{ThreeDsEnrolled, ThreeDsResult, ThreeDsStatus, THREE_DS_CHANNELS};
use caisse_domain::{Mode, Money, PaymentId, ShopId};
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventRepository;

use crate::context::RequestContext;
use crate::error::AppError;
use crate::payments::{PaymentResult, PaymentService, PreparedCard};
use crate::ports::{
    AuthorisationPurpose, ChallengeResult, ThreeDsAnswer, ThreeDsRequest, ThreeDsServer,
};
use crate::risk::RiskService;

/// How long a buyer has to answer a 3-D Secure challenge before the payment
/// is abandoned.
pub const CHALLENGE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(15 * 60);

/// The 3-D Secure server for each mode: the simulator for test, the real one for live.
pub struct ThreeDsServers {
    pub test: Arc<dyn ThreeDsServer>,
    pub live: Arc<dyn ThreeDsServer>,
}

impl ThreeDsServers {
    fn for_mode(&self, mode: Mode) -> &dyn ThreeDsServer {
        match mode {
            Mode::Test => self.test.as_ref(),
            Mode::Live => self.live.as_ref(),
        }
    }
}

/// The risk controls and 3-D Secure a payment service runs before authorising.
pub struct PaymentSecurity<R: PersistedEventRepository> {
    pub risk: Arc<RiskService<R>>,
    pub three_ds: ThreeDsServers,
    pub challenge_timeout: Duration,
}

/// The payment a buyer is making, as the controls see it.
pub struct SecurityInput<'a> {
    pub shop_id: ShopId,
    pub mode: Mode,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub channel: caisse_domain::payment::Channel,
    pub buyer_ip: Option<&'a str>,
    pub buyer_country: Option<&'a str>,
}

/// What the controls and 3-D Secure decided before any authorisation.
pub enum SecurityVerdict {
    /// Go on to the acquirer.
    Proceed {
        three_ds: ThreeDsResult,
        risk: RiskAssessment,
    },
    /// Refused before the acquirer: a blocking control or a failed authentication.
    Refused {
        three_ds: ThreeDsResult,
        risk: RiskAssessment,
        refusal: Refusal,
    },
    /// The issuer asked for a challenge: the payment waits for its result.
    ChallengePending {
        three_ds: ThreeDsResult,
        risk: RiskAssessment,
        abandon_at: DateTime<Utc>,
    },
}

impl SecurityVerdict {
    /// Whether the card outstanding counted this payment and must give it
    /// back if it ends unauthorised.
    fn reserved_outstanding(risk: &RiskAssessment) -> bool {
        risk.checks.iter().any(|c| {
            c.control == RiskControl::CardOutstanding
                && !(c.fired && c.mode == caisse_domain::risk::ControlMode::Blocking)
        })
    }
}

fn risk_refusal(check: &ControlCheck) -> Refusal {
    Refusal {
        code: check
            .reason
            .clone()
            .unwrap_or_else(|| "RISK_REFUSED".to_string()),
        message: check.detail.clone(),
        category: RefusalCategory::Risk,
    }
}

fn authentication_refusal() -> Refusal {
    Refusal {
        code: "THREE_DS_FAILED".to_string(),
        message: "3-D Secure authentication failed".to_string(),
        category: RefusalCategory::Authentication,
    }
}

impl<R> PaymentService<R>
where
    R: PersistedEventRepository,
{
    /// Runs the risk controls, the card outstanding and 3-D Secure for a card
    /// the buyer just gave. Without security configured: 3DS not performed,
    /// no control.
    pub(crate) async fn secure(
        &self,
        context: &RequestContext,
        card: &mut PreparedCard,
        input: SecurityInput<'_>,
    ) -> Result<SecurityVerdict, AppError> {
        let Some(security) = &self.security else {
            return Ok(SecurityVerdict::Proceed {
                three_ds: ThreeDsResult::not_performed(),
                risk: RiskAssessment::default(),
            });
        };
        let brand = card.snapshot.brand;
        let pre = security
            .risk
            .assess_before_authentication(
                input.shop_id,
                &card.pan,
                brand,
                &card.snapshot.fingerprint,
                input.buyer_ip,
                input.buyer_country,
                input.channel,
            )
            .await?;
        card.snapshot.issuing_country = pre.card_country.clone();
        let mut risk = RiskAssessment {
            checks: pre.checks,
            bins_version: Some(pre.reference.bins_version.clone()),
            ip_countries_version: Some(pre.reference.ip_countries_version.clone()),
        };
        let not_performed = ThreeDsResult::not_performed();
        if let Some(blocking) = risk.blocking() {
            let refusal = risk_refusal(blocking);
            return Ok(SecurityVerdict::Refused {
                three_ds: not_performed,
                risk,
                refusal,
            });
        }
        if let Some(check) = security
            .risk
            .reserve_outstanding(
                context,
                &pre.settings,
                crate::risk::OutstandingClaim {
                    shop_id: input.shop_id,
                    mode: input.mode,
                    card_fingerprint: &card.snapshot.fingerprint,
                    payment_id: input.payment_id,
                    amount: input.amount,
                },
            )
            .await?
        {
            risk.checks.push(check);
        }
        if let Some(blocking) = risk.blocking() {
            let refusal = risk_refusal(blocking);
            return Ok(SecurityVerdict::Refused {
                three_ds: not_performed,
                risk,
                refusal,
            });
        }
        let three_ds = if pre
            .settings
            .three_ds_enrolment()
            .applies(brand, input.channel)
        {
            let answer = security
                .three_ds
                .for_mode(input.mode)
                .authenticate(ThreeDsRequest {
                    mode: input.mode,
                    payment_id: input.payment_id,
                    pan: &card.pan,
                    brand,
                    amount: input.amount,
                })
                .await;
            match answer {
                ThreeDsAnswer::Final(result) => result,
                ThreeDsAnswer::ChallengeRequired { transaction_id } => {
                    let three_ds = ThreeDsResult::new(
                        ThreeDsEnrolled::Enrolled,
                        ThreeDsStatus::ChallengePending,
                        Some(transaction_id),
                        None,
                    );
                    let timeout = chrono::Duration::from_std(security.challenge_timeout)
                        .unwrap_or_else(|_| chrono::Duration::minutes(15));
                    return Ok(SecurityVerdict::ChallengePending {
                        three_ds,
                        risk,
                        abandon_at: self.clock.now() + timeout,
                    });
                }
            }
        } else {
            not_performed
        };
        self.after_authentication(
            context,
            &input,
            three_ds,
            risk,
            &pre.settings,
            &card.snapshot.fingerprint,
        )
        .await
    }

    /// The verdict once 3-D Secure has a final outcome: a failed
    /// authentication refuses; RC-8 runs on the guarantee.
    async fn after_authentication(
        &self,
        context: &RequestContext,
        input: &SecurityInput<'_>,
        three_ds: ThreeDsResult,
        mut risk: RiskAssessment,
        settings: &caisse_domain::risk::ShopRiskSettings,
        fingerprint: &str,
    ) -> Result<SecurityVerdict, AppError> {
        let refusal = if three_ds.status == ThreeDsStatus::Failed {
            Some(authentication_refusal())
        } else {
            // MOTO, call centre, IVR and ERP payments have no buyer browser to
            // authenticate in: they can never carry a guarantee, so the filter
            // is not theirs to fail (a shop enabling it keeps its phone orders).
            let can_be_guaranteed = THREE_DS_CHANNELS.contains(&input.channel);
            if let Some(check) = guarantee_check(settings, three_ds.guarantee, input.amount)
                .filter(|_| can_be_guaranteed)
            {
                risk.checks.push(check);
            }
            risk.blocking().map(risk_refusal)
        };
        match refusal {
            Some(refusal) => {
                if SecurityVerdict::reserved_outstanding(&risk) {
                    self.release_outstanding(
                        context,
                        input.shop_id,
                        input.mode,
                        fingerprint,
                        input.payment_id,
                    )
                    .await?;
                }
                Ok(SecurityVerdict::Refused {
                    three_ds,
                    risk,
                    refusal,
                })
            }
            None => Ok(SecurityVerdict::Proceed { three_ds, risk }),
        }
    }

    /// Gives a payment that ended unauthorised back to the card's outstanding.
    pub(crate) async fn release_outstanding(
        &self,
        context: &RequestContext,
        shop_id: ShopId,
        mode: Mode,
        fingerprint: &str,
        payment_id: PaymentId,
    ) -> Result<(), AppError> {
        if let Some(security) = &self.security {
            security
                .risk
                .release_outstanding(context, shop_id, mode, fingerprint, payment_id)
                .await?;
        }
        Ok(())
    }

    /// Releases the outstanding of a payment the acquirer refused, when the
    /// control had counted it.
    pub(crate) async fn release_if_refused(
        &self,
        context: &RequestContext,
        result: &PaymentResult,
    ) -> Result<(), AppError> {
        let Some(details) = &result.payment.details else {
            return Ok(());
        };
        if matches!(
            result.payment.status,
            PaymentStatus::Refused | PaymentStatus::Abandoned
        ) && SecurityVerdict::reserved_outstanding(&details.risk)
        {
            self.release_outstanding(
                context,
                details.shop_id,
                details.mode,
                &details.card.fingerprint,
                details.payment_id,
            )
            .await?;
        }
        Ok(())
    }

    /// The result of a 3-D Secure challenge (posted by the test environment's
    /// `completeThreeDsChallenge`; the hosted page will post it in the browser
    /// flow). A success goes on to the guarantee filter and the authorisation.
    pub async fn complete_challenge(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
        result: ChallengeResult,
    ) -> Result<PaymentResult, AppError> {
        let Some(security) = &self.security else {
            return Err(PaymentError::NotAuthenticationPending {
                status: "NOT_CONFIGURED".to_string(),
            }
            .into());
        };
        // One completion at a time per payment: never two authorisations.
        let _lease = self
            .key_lock
            .acquire(&format!("challenge:{payment_id}"))
            .await?;
        let payment = self.runner.load(&payment_id.to_string()).await?;
        let details = payment.visible_details(&context.scope)?.clone();
        if payment.status != PaymentStatus::AuthenticationPending {
            return Err(PaymentError::NotAuthenticationPending {
                status: payment.status.as_str().to_string(),
            }
            .into());
        }
        if details.mode == Mode::Live {
            return Err(AppError::Rejected {
                code: "CHALLENGE_RESULT_FROM_ACS_ONLY",
                message: "in live mode the challenge result comes from the issuer's ACS, \
                          not from an API call"
                    .to_string(),
            });
        }
        let transaction_id = details.three_ds.transaction_id.clone().unwrap_or_default();
        let three_ds = security
            .three_ds
            .for_mode(details.mode)
            .complete_challenge(&transaction_id, result)
            .await;
        let settings = security.risk.settings(details.shop_id).await?;
        let mut checks = Vec::new();
        let mut refusal = None;
        if three_ds.status == ThreeDsStatus::Failed {
            refusal = Some(authentication_refusal());
        } else if let Some(check) = guarantee_check(&settings, three_ds.guarantee, details.amount) {
            if check.fired && check.mode == caisse_domain::risk::ControlMode::Blocking {
                refusal = Some(risk_refusal(&check));
            }
            checks.push(check);
        }
        let card_check_only = deferred_beyond_validity(&details);
        let outcome = match refusal {
            Some(refusal) => AuthorisationOutcome::Declined(refusal),
            None => {
                let purpose = if card_check_only {
                    AuthorisationPurpose::CardCheck
                } else {
                    AuthorisationPurpose::Payment
                };
                self.authorise_vaulted_card(&details, purpose).await?
            }
        };
        let command = PaymentCommand::CompleteAuthentication {
            three_ds,
            checks,
            outcome,
            card_check_only,
            occurred_at: self.clock.now(),
        };
        let completed = self.run_command(context, payment_id, command).await?;
        self.release_if_refused(context, &completed).await?;
        Ok(completed)
    }

    /// The scheduler's answer to a challenge nobody answered in time.
    pub async fn abandon_authentication(
        &self,
        context: &RequestContext,
        payment_id: PaymentId,
    ) -> Result<PaymentResult, AppError> {
        let command = PaymentCommand::AbandonAuthentication {
            occurred_at: self.clock.now(),
        };
        let abandoned = self.run_command(context, payment_id, command).await?;
        self.release_if_refused(context, &abandoned).await?;
        Ok(abandoned)
    }
}

/// Whether the capture date lies beyond the authorisation validity, so only
/// the card is checked now (TY-4).
fn deferred_beyond_validity(details: &caisse_domain::payment::PaymentDetails) -> bool {
    let created = details.occurred_at.date_naive();
    (details.capture_date - created).num_days() > i64::from(details.authorisation_validity_days)
}
