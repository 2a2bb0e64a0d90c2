//! The `DailyCutOff` aggregate: the record that a shop's remittance cut-off of one
//! business day ran (CM-10). Its id names the shop, mode and day, so a second
//! scheduler that runs the same cut-off finds it done and records nothing.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{Mode, RemittanceId, ShopId};

/// The aggregate id of one shop's cut-off of one day.
pub fn cut_off_id(shop_id: ShopId, mode: Mode, business_date: NaiveDate) -> String {
    format!("cutoff_{shop_id}_{}_{business_date}", mode.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutOffCommand {
    Complete {
        shop_id: ShopId,
        mode: Mode,
        business_date: NaiveDate,
        remittance_ids: Vec<RemittanceId>,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CutOffEvent {
    DailyCutOffCompleted {
        shop_id: ShopId,
        mode: Mode,
        business_date: NaiveDate,
        /// The remittances this cut-off created; empty when nothing was due.
        remittance_ids: Vec<RemittanceId>,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for CutOffEvent {
    fn event_type(&self) -> String {
        match self {
            CutOffEvent::DailyCutOffCompleted { .. } => "DailyCutOffCompleted".to_string(),
        }
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutOffError {
    #[error("this cut-off already ran")]
    AlreadyCompleted,
}

impl CutOffError {
    pub fn code(&self) -> &'static str {
        match self {
            CutOffError::AlreadyCompleted => "CUT_OFF_ALREADY_COMPLETED",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCutOff {
    pub completed: bool,
}

impl Aggregate for DailyCutOff {
    const TYPE: &'static str = "DailyCutOff";
    type Command = CutOffCommand;
    type Event = CutOffEvent;
    type Error = CutOffError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if self.completed {
            return Err(CutOffError::AlreadyCompleted);
        }
        let CutOffCommand::Complete {
            shop_id,
            mode,
            business_date,
            remittance_ids,
            occurred_at,
        } = command;
        let event = CutOffEvent::DailyCutOffCompleted {
            shop_id,
            mode,
            business_date,
            remittance_ids,
            occurred_at,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CutOffEvent::DailyCutOffCompleted { .. } => self.completed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn complete() -> CutOffCommand {
        CutOffCommand::Complete {
            shop_id: ShopId::new(),
            mode: Mode::Test,
            business_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            remittance_ids: vec![],
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn a_cut_off_completes_once() {
        let command = complete();
        let CutOffCommand::Complete {
            shop_id,
            mode,
            business_date,
            remittance_ids,
            occurred_at,
        } = command.clone();
        let event = CutOffEvent::DailyCutOffCompleted {
            shop_id,
            mode,
            business_date,
            remittance_ids,
            occurred_at,
        };
        TestFramework::<DailyCutOff>::with(())
            .given_no_previous_events()
            .when(command.clone())
            .then_expect_events(vec![event.clone()]);
        TestFramework::<DailyCutOff>::with(())
            .given(vec![event])
            .when(command)
            .then_expect_error(CutOffError::AlreadyCompleted);
    }
}
