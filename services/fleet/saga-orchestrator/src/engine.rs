//! The state machine: what a saga does on its start, on a reply and on a
//! timeout. Pure: it reads the instance and returns the change (new state,
//! step log entries, messages to send), which the store writes in one
//! transaction.

use std::time::Duration;

use sluice_contracts::types::SagaStep;
use uuid::Uuid;

use crate::definition::{Context, Direction, Failure, Made, Message, Saga, command_id};

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Running its steps.
    Running,
    /// Undoing the completed steps after a failure.
    Compensating,
    /// Every step done; the completion was announced.
    Completed,
    /// Failed and undone; the rejection was announced.
    Compensated,
    /// A compensation failed or timed out: an operator has to look.
    Failed,
}

impl Phase {
    /// Its name in Postgres and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Compensating => "COMPENSATING",
            Self::Completed => "COMPLETED",
            Self::Compensated => "COMPENSATED",
            Self::Failed => "FAILED",
        }
    }

    /// The phase named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Compensating,
            Self::Completed,
            Self::Compensated,
            Self::Failed,
        ]
        .into_iter()
        .find(|phase| phase.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether the saga is over.
    pub fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }
}

/// A saga instance as stored.
#[derive(Debug, Clone)]
pub struct Instance<D> {
    /// Its id.
    pub saga_id: Uuid,
    /// Its phase.
    pub phase: Phase,
    /// Index of the step being run or compensated.
    pub step: usize,
    /// Attempt of that step's command, from 1.
    pub attempt: u32,
    /// Its data.
    pub data: D,
    /// Why it is compensating, once it is.
    pub failure: Option<Failure>,
}

impl<D> Instance<D> {
    /// Moves it as `transition` says (a second reply in the same batch
    /// finds it there).
    pub fn moved(&mut self, transition: &Transition) {
        self.phase = transition.phase;
        self.step = transition.step;
        self.attempt = transition.attempt;
        self.failure.clone_from(&transition.failure);
    }
}

/// How a step's command ended, as its reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (now or before).
    Done,
    /// Refused for good.
    Refused(String),
    /// Refused after part of it was applied (a record made, its
    /// confirmation refused), or given up with no telling: the step is
    /// compensated too, as a timed-out one is.
    Unfinished(String),
}

/// A reply, correlated by saga, step and command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The saga.
    pub saga_id: Uuid,
    /// The step.
    pub step: String,
    /// The command answered.
    pub command_id: Uuid,
    /// How it ended.
    pub outcome: Outcome,
}

/// One line of the step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The step.
    pub step: String,
    /// Attempt of the step's command.
    pub attempt: u32,
    /// What happened (command_sent, succeeded, …).
    pub event: &'static str,
    /// Why, when there is more to say.
    pub detail: Option<String>,
}

/// A change of a saga.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The new phase.
    pub phase: Phase,
    /// The new step index.
    pub step: usize,
    /// The new attempt.
    pub attempt: u32,
    /// When the new step times out, from now; None once finished.
    pub timeout: Option<Duration>,
    /// The failure being compensated.
    pub failure: Option<Failure>,
    /// Step log entries.
    pub log: Vec<LogEntry>,
    /// Messages to send, with the step each belongs to.
    pub send: Vec<Outgoing>,
    /// Whether a new step (or compensation) began.
    pub step_began: bool,
}

/// A message and its id in the outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Outbox row id: unique per saga, step, direction and attempt.
    pub id: Uuid,
    /// The step it belongs to.
    pub step: String,
    /// The message.
    pub message: Message,
}

/// Runs sagas of one type.
pub struct Engine<'a, D> {
    saga: &'a Saga<D>,
}

impl<'a, D> Engine<'a, D> {
    /// The engine of `saga`.
    pub fn new(saga: &'a Saga<D>) -> Self {
        Self { saga }
    }

    /// A new saga: its first step's command.
    pub fn start(&self, saga_id: Uuid, data: &D) -> Transition {
        let mut change = Change::new(saga_id, data, None);
        self.advance(&mut change, 0);
        change.finish()
    }

    /// What `reply` does to `instance`; None when it changes nothing (a
    /// duplicate, a late reply to an earlier step or attempt).
    pub fn on_reply(&self, instance: &Instance<D>, reply: &Reply) -> Option<Transition> {
        let direction = match (instance.phase, &reply.outcome) {
            (Phase::Running, _) => Direction::Forward,
            (Phase::Compensating, _) => Direction::Compensate,
            // A compensation given up on after its timeouts may still be
            // applied (the sink back after an outage): its late success
            // resumes the compensation instead of being dropped.
            (Phase::Failed, Outcome::Done) if instance.failure.is_some() => Direction::Compensate,
            _ => return None,
        };
        let step = self.saga.steps.get(instance.step)?;
        if reply.step != step.name
            || reply.command_id != command_id(instance.saga_id, &step.name, direction)
        {
            return None;
        }
        let mut change = Change::resume(instance);
        match (direction, &reply.outcome) {
            (Direction::Forward, Outcome::Done) => {
                change.log(&step.name, instance.attempt, "succeeded", None);
                self.advance(&mut change, instance.step + 1);
            }
            (Direction::Forward, Outcome::Refused(reason) | Outcome::Unfinished(reason)) => {
                change.log(&step.name, instance.attempt, "failed", Some(reason.clone()));
                change.failure = Some(Failure {
                    step: step.name.to_owned(),
                    reason: reason.clone(),
                });
                let left_something = matches!(reply.outcome, Outcome::Unfinished(_));
                self.compensate_below(&mut change, instance.step + usize::from(left_something));
            }
            (Direction::Compensate, Outcome::Done) => {
                change.log(&step.name, instance.attempt, "compensated", None);
                self.compensate_below(&mut change, instance.step);
            }
            (Direction::Compensate, Outcome::Refused(reason) | Outcome::Unfinished(reason)) => {
                change.log(
                    &step.name,
                    instance.attempt,
                    "compensation_failed",
                    Some(reason.clone()),
                );
                change.phase = Phase::Failed;
                change.timeout = None;
            }
        }
        Some(change.finish())
    }

    /// What the deadline of `instance`'s step passing does: send again while
    /// the retry budget lasts, then fail the step (compensating it too, as
    /// its command may yet be applied) or, for a compensation, the saga.
    pub fn on_timeout(&self, instance: &Instance<D>) -> Option<Transition> {
        let step = self.saga.steps.get(instance.step)?;
        let direction = match instance.phase {
            Phase::Running => Direction::Forward,
            Phase::Compensating => Direction::Compensate,
            _ => return None,
        };
        let mut change = Change::resume(instance);
        let waited = step.timeout;
        if instance.attempt <= step.retries {
            change.log(
                &step.name,
                instance.attempt,
                "timed_out",
                Some(format!("no reply within {waited:?}; sending again")),
            );
            self.send(&mut change, instance.step, direction, instance.attempt + 1);
            return Some(change.finish());
        }
        let reason = format!(
            "no reply within {waited:?} after {} attempt(s)",
            instance.attempt
        );
        change.log(
            &step.name,
            instance.attempt,
            "timed_out",
            Some(reason.clone()),
        );
        match direction {
            Direction::Forward => {
                change.failure = Some(Failure {
                    step: step.name.to_owned(),
                    reason,
                });
                self.compensate_below(&mut change, instance.step + 1);
            }
            Direction::Compensate => {
                change.phase = Phase::Failed;
                change.timeout = None;
            }
        }
        Some(change.finish())
    }

    /// Runs step `index`, or completes the saga after the last.
    fn advance(&self, change: &mut Change<'_, D>, index: usize) {
        if index < self.saga.steps.len() {
            change.phase = Phase::Running;
            self.send(change, index, Direction::Forward, 1);
            return;
        }
        let last = self.saga.steps.len().saturating_sub(1);
        change.phase = Phase::Completed;
        change.step = last;
        change.timeout = None;
        change.log(self.step_name(last), change.attempt, "completed", None);
        let made = (self.saga.completed)(change.saga_id, change.data, None);
        self.announce(change, self.step_name(last), made);
    }

    /// Sends the outcome event; one the saga's data cannot make fails the
    /// saga (an operator has to look: its steps are done or undone).
    fn announce(&self, change: &mut Change<'_, D>, step: &str, made: Made) {
        match made {
            Ok(message) => change.announce(step, message),
            Err(reason) => {
                let attempt = change.attempt;
                let reason = format!("its outcome event could not be made: {reason}");
                change.log(step, attempt, "outcome_unmade", Some(reason));
                change.phase = Phase::Failed;
            }
        }
    }

    /// Compensates the nearest compensable step before `below`, or ends the
    /// saga rejected when none is left.
    fn compensate_below(&self, change: &mut Change<'_, D>, below: usize) {
        let next = (0..below)
            .rev()
            .find(|&index| self.saga.steps[index].compensable());
        if let Some(index) = next {
            change.phase = Phase::Compensating;
            self.send(change, index, Direction::Compensate, 1);
            return;
        }
        change.phase = Phase::Compensated;
        change.timeout = None;
        let failure = change.failure.clone();
        let step = failure
            .as_ref()
            .map_or_else(|| self.step_name(change.step), |f| f.step.as_str());
        change.log(
            step,
            change.attempt,
            "rejected",
            failure.as_ref().map(|f| f.reason.clone()),
        );
        let made = (self.saga.rejected)(change.saga_id, change.data, failure.as_ref());
        self.announce(change, step, made);
    }

    /// Sends step `index`'s command (or compensation) as `attempt`.
    fn send(&self, change: &mut Change<'_, D>, index: usize, direction: Direction, attempt: u32) {
        let step = &self.saga.steps[index];
        let id = command_id(change.saga_id, &step.name, direction);
        let failure = change.failure.clone();
        let context = Context {
            saga_id: change.saga_id,
            data: change.data,
            command_id: id,
            step: SagaStep {
                saga_id: change.saga_id.to_string(),
                step: step.name.to_owned(),
                attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            },
            failure: failure.as_ref(),
        };
        let (made, event) = match (direction, &step.compensation) {
            (Direction::Compensate, Some(compensation)) => {
                (compensation(&context), "compensation_sent")
            }
            _ => ((step.command)(&context), "command_sent"),
        };
        change.step = index;
        change.attempt = attempt;
        let message = match made {
            Ok(message) => message,
            Err(reason) => return self.unmade(change, index, direction, reason),
        };
        change.step_began |= attempt == 1;
        change.timeout = Some(step.timeout);
        change.log(&step.name, attempt, event, None);
        let suffix = match direction {
            Direction::Forward => "do",
            Direction::Compensate => "undo",
        };
        change.send.push(Outgoing {
            id: Uuid::new_v5(
                &change.saga_id,
                format!("{}/{suffix}/{attempt}", step.name).as_bytes(),
            ),
            step: step.name.to_owned(),
            message,
        });
    }

    /// A command the saga's data cannot make (a value its event lacks):
    /// nothing is sent. A step fails as a refused one does (undone itself
    /// when an earlier attempt was sent); a compensation fails the saga.
    fn unmade(
        &self,
        change: &mut Change<'_, D>,
        index: usize,
        direction: Direction,
        reason: String,
    ) {
        let step = &self.saga.steps[index].name;
        let reason = format!("its command could not be made: {reason}");
        change.log(step, change.attempt, "command_unmade", Some(reason.clone()));
        match direction {
            Direction::Forward => {
                change.failure = Some(Failure {
                    step: step.clone(),
                    reason,
                });
                // A resend that cannot be made: the first send may have
                // been applied, so the step is undone too.
                let sent_before = usize::from(change.attempt > 1);
                self.compensate_below(change, index + sent_before);
            }
            Direction::Compensate => {
                change.phase = Phase::Failed;
                change.timeout = None;
            }
        }
    }

    fn step_name(&self, index: usize) -> &'a str {
        self.saga
            .steps
            .get(index)
            .map_or("", |step| step.name.as_str())
    }
}

/// A transition being built.
struct Change<'d, D> {
    saga_id: Uuid,
    data: &'d D,
    phase: Phase,
    step: usize,
    attempt: u32,
    timeout: Option<Duration>,
    failure: Option<Failure>,
    log: Vec<LogEntry>,
    send: Vec<Outgoing>,
    step_began: bool,
}

impl<'d, D> Change<'d, D> {
    fn new(saga_id: Uuid, data: &'d D, failure: Option<Failure>) -> Self {
        Self {
            saga_id,
            data,
            phase: Phase::Running,
            step: 0,
            attempt: 1,
            timeout: None,
            failure,
            log: Vec::new(),
            send: Vec::new(),
            step_began: false,
        }
    }

    fn resume(instance: &'d Instance<D>) -> Self {
        let mut change = Self::new(instance.saga_id, &instance.data, instance.failure.clone());
        change.phase = instance.phase;
        change.step = instance.step;
        change.attempt = instance.attempt;
        change
    }

    fn log(&mut self, step: &str, attempt: u32, event: &'static str, detail: Option<String>) {
        self.log.push(LogEntry {
            step: step.to_owned(),
            attempt,
            event,
            detail,
        });
    }

    /// The message announcing the end: its id is the event's own.
    fn announce(&mut self, step: &str, message: Message) {
        self.send.push(Outgoing {
            id: Uuid::new_v5(&self.saga_id, b"end"),
            step: step.to_owned(),
            message,
        });
    }

    fn finish(self) -> Transition {
        Transition {
            phase: self.phase,
            step: self.step,
            attempt: self.attempt,
            timeout: self.timeout,
            failure: self.failure,
            log: self.log,
            send: self.send,
            step_began: self.step_began,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Payload, Step};
    use sluice_contracts::types::{ErpCommand, ErpOperation};

    fn message(topic: &str, key: &str, command_id: String) -> Message {
        Message {
            topic: topic.into(),
            key: key.into(),
            value: Payload::Erp(ErpCommand {
                command_id,
                model: "m".into(),
                operation: ErpOperation::Create,
                external_ref: "r".into(),
                fields: Vec::new(),
                source_event_id: None,
                issued_at: 0,
                saga: None,
                correlation_id: None,
                causation_id: None,
            }),
        }
    }

    fn command(ctx: &Context<'_, ()>) -> Made {
        Ok(message(
            "commands",
            &ctx.step.step,
            ctx.command_id.to_string(),
        ))
    }

    fn undo(ctx: &Context<'_, ()>) -> Made {
        Ok(message("undo", &ctx.step.step, ctx.command_id.to_string()))
    }

    fn end(saga_id: Uuid, _: &(), failure: Option<&Failure>) -> Made {
        let key = failure.map_or("done", |f| f.step.as_str());
        Ok(message("events", key, saga_id.to_string()))
    }

    /// a → b (no compensation) → c, each with one retry.
    fn saga() -> Saga<()> {
        Saga::new("test", end, end)
            .step(Step::new("a", command).compensate_with(undo).retries(1))
            .step(Step::new("b", command).retries(1))
            .step(Step::new("c", command).compensate_with(undo).retries(1))
    }

    const ID: Uuid = Uuid::from_u128(7);

    fn at(transition: &Transition) -> Instance<()> {
        let mut instance = Instance {
            saga_id: ID,
            phase: Phase::Running,
            step: 0,
            attempt: 1,
            data: (),
            failure: None,
        };
        instance.moved(transition);
        instance
    }

    fn reply(step: &str, direction: Direction, outcome: Outcome) -> Reply {
        Reply {
            saga_id: ID,
            step: step.into(),
            command_id: command_id(ID, step, direction),
            outcome,
        }
    }

    fn events(transition: &Transition) -> Vec<(&str, &str)> {
        transition
            .log
            .iter()
            .map(|entry| (entry.step.as_str(), entry.event))
            .collect()
    }

    /// What may answer this saga type: its steps' commands and
    /// compensations, by their derived ids; not a stray id, nor a step it
    /// does not have.
    #[test]
    fn a_reply_fits_the_saga_by_its_step_and_derived_command_id() {
        let saga = saga();
        assert!(saga.sent(&reply("a", Direction::Forward, Outcome::Done)));
        assert!(saga.sent(&reply("c", Direction::Compensate, Outcome::Done)));
        let stray = Reply {
            command_id: Uuid::from_u128(8),
            ..reply("a", Direction::Forward, Outcome::Done)
        };
        assert!(!saga.sent(&stray));
        assert!(!saga.sent(&reply("z", Direction::Forward, Outcome::Done)));
    }

    #[test]
    fn every_step_done_completes_and_announces() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let mut state = engine.start(ID, &());
        assert_eq!(state.send[0].message.key, "a");
        for name in ["a", "b", "c"] {
            state = engine
                .on_reply(&at(&state), &reply(name, Direction::Forward, Outcome::Done))
                .unwrap();
        }
        assert_eq!(state.phase, Phase::Completed);
        assert_eq!(events(&state), [("c", "succeeded"), ("c", "completed")]);
        assert_eq!(state.send[0].message.topic, "events");
        assert_eq!(state.timeout, None);
    }

    /// A message the saga's data cannot make: a step's fails the step
    /// (nothing sent), a compensation's or an outcome's the saga.
    #[test]
    fn a_message_the_data_cannot_make_fails_the_step_or_the_saga() {
        let unmade = |_: &Context<'_, ()>| -> Made { Err("payload.x is null".into()) };
        let saga = Saga::new("test", end, end)
            .step(Step::new("a", command).compensate_with(undo))
            .step(Step::new("b", unmade));
        let engine = Engine::new(&saga);
        let state = engine.start(ID, &());
        let state = engine
            .on_reply(&at(&state), &reply("a", Direction::Forward, Outcome::Done))
            .unwrap();
        assert_eq!(
            events(&state),
            [
                ("a", "succeeded"),
                ("b", "command_unmade"),
                ("a", "compensation_sent")
            ]
        );
        assert_eq!(state.phase, Phase::Compensating);
        let failure = state.failure.clone().unwrap();
        assert_eq!(failure.step, "b");
        assert!(
            failure.reason.contains("payload.x is null"),
            "{}",
            failure.reason
        );
        assert_eq!(state.send.len(), 1);

        let undo_unmade = Saga::new("test", end, end)
            .step(Step::new("a", command).compensate_with(unmade))
            .step(Step::new("b", command));
        let engine = Engine::new(&undo_unmade);
        let state = engine.start(ID, &());
        let state = engine
            .on_reply(&at(&state), &reply("a", Direction::Forward, Outcome::Done))
            .unwrap();
        let state = engine
            .on_reply(
                &at(&state),
                &reply("b", Direction::Forward, Outcome::Refused("no".into())),
            )
            .unwrap();
        assert_eq!(state.phase, Phase::Failed);
        assert_eq!(events(&state), [("b", "failed"), ("a", "command_unmade")]);
        assert!(state.send.is_empty());

        // Its resend cannot be made (the file changed in between): the
        // first send may be applied, so the step itself is undone.
        let resend_unmade = |ctx: &Context<'_, ()>| match ctx.step.attempt {
            1 => command(ctx),
            _ => Err("payload.x is null".into()),
        };
        let saga = Saga::new("test", end, end).step(
            Step::new("a", resend_unmade)
                .compensate_with(undo)
                .retries(1),
        );
        let engine = Engine::new(&saga);
        let state = engine.start(ID, &());
        let state = engine.on_timeout(&at(&state)).unwrap();
        assert_eq!(
            events(&state),
            [
                ("a", "timed_out"),
                ("a", "command_unmade"),
                ("a", "compensation_sent")
            ]
        );

        let no_outcome = |_: Uuid, _: &(), _: Option<&Failure>| -> Made { Err("no".into()) };
        let unannounced = Saga::new("test", no_outcome, end).step(Step::new("a", command));
        let engine = Engine::new(&unannounced);
        let state = engine.start(ID, &());
        let state = engine
            .on_reply(&at(&state), &reply("a", Direction::Forward, Outcome::Done))
            .unwrap();
        assert_eq!(state.phase, Phase::Failed);
        assert_eq!(
            events(&state),
            [
                ("a", "succeeded"),
                ("a", "completed"),
                ("a", "outcome_unmade")
            ]
        );
        assert!(state.send.is_empty());
    }

    #[test]
    fn a_refusal_compensates_the_completed_compensable_steps_in_reverse() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let mut state = engine.start(ID, &());
        for name in ["a", "b"] {
            state = engine
                .on_reply(&at(&state), &reply(name, Direction::Forward, Outcome::Done))
                .unwrap();
        }
        let refused = Outcome::Refused("no stock".into());
        state = engine
            .on_reply(&at(&state), &reply("c", Direction::Forward, refused))
            .unwrap();
        // c failed (nothing to undo), b has no compensation: a is undone.
        assert_eq!(state.phase, Phase::Compensating);
        assert_eq!(
            events(&state),
            [("c", "failed"), ("a", "compensation_sent")]
        );
        assert_eq!(state.send[0].message.topic, "undo");
        state = engine
            .on_reply(
                &at(&state),
                &reply("a", Direction::Compensate, Outcome::Done),
            )
            .unwrap();
        assert_eq!(state.phase, Phase::Compensated);
        assert_eq!(events(&state), [("a", "compensated"), ("c", "rejected")]);
        assert_eq!(state.send[0].message.key, "c");
    }

    #[test]
    fn a_step_refused_after_part_of_it_was_applied_is_compensated_too() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let first = engine.start(ID, &());
        let unfinished = Outcome::Unfinished("confirm refused".into());
        let state = engine
            .on_reply(&at(&first), &reply("a", Direction::Forward, unfinished))
            .unwrap();
        assert_eq!(state.phase, Phase::Compensating);
        assert_eq!(
            events(&state),
            [("a", "failed"), ("a", "compensation_sent")]
        );
        assert_eq!(state.send[0].message.topic, "undo");
    }

    #[test]
    fn duplicate_late_and_misdirected_replies_change_nothing() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let first = engine.start(ID, &());
        let second = engine
            .on_reply(&at(&first), &reply("a", Direction::Forward, Outcome::Done))
            .unwrap();
        let instance = at(&second);
        // a's reply again, a compensation's reply while running, another
        // saga's reply.
        assert!(
            engine
                .on_reply(&instance, &reply("a", Direction::Forward, Outcome::Done))
                .is_none()
        );
        assert!(
            engine
                .on_reply(&instance, &reply("b", Direction::Compensate, Outcome::Done))
                .is_none()
        );
        let mut foreign = reply("b", Direction::Forward, Outcome::Done);
        foreign.command_id = command_id(Uuid::from_u128(8), "b", Direction::Forward);
        assert!(engine.on_reply(&instance, &foreign).is_none());
        let mut finished = instance;
        finished.phase = Phase::Completed;
        assert!(
            engine
                .on_reply(&finished, &reply("b", Direction::Forward, Outcome::Done))
                .is_none()
        );
    }

    #[test]
    fn replies_of_one_batch_see_each_others_moves() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let mut instance = at(&engine.start(ID, &()));
        for step in ["a", "b", "c"] {
            let done = reply(step, Direction::Forward, Outcome::Done);
            let transition = engine.on_reply(&instance, &done).unwrap();
            instance.moved(&transition);
            // The same reply again later in the batch changes nothing.
            assert!(engine.on_reply(&instance, &done).is_none(), "{step}");
        }
        assert_eq!(instance.phase, Phase::Completed);
    }

    #[test]
    fn a_timeout_sends_again_then_compensates_the_step_itself() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let first = engine.start(ID, &());
        let again = engine.on_timeout(&at(&first)).unwrap();
        assert_eq!((again.phase, again.attempt), (Phase::Running, 2));
        assert_eq!(events(&again), [("a", "timed_out"), ("a", "command_sent")]);
        // The same command id, a new outbox row.
        assert_ne!(again.send[0].id, first.send[0].id);
        let given_up = engine.on_timeout(&at(&again)).unwrap();
        assert_eq!(given_up.phase, Phase::Compensating);
        assert_eq!(
            events(&given_up),
            [("a", "timed_out"), ("a", "compensation_sent")]
        );
        assert_eq!(given_up.failure.as_ref().unwrap().step, "a");
        // The late reply to the timed-out command is ignored.
        assert!(
            engine
                .on_reply(
                    &at(&given_up),
                    &reply("a", Direction::Forward, Outcome::Done)
                )
                .is_none()
        );
    }

    #[test]
    fn a_compensation_answered_after_it_was_given_up_resumes() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let mut state = engine.start(ID, &());
        for name in ["a", "b"] {
            state = engine
                .on_reply(&at(&state), &reply(name, Direction::Forward, Outcome::Done))
                .unwrap();
        }
        // c's command and its compensation each time out twice.
        for _ in 0..4 {
            state = engine.on_timeout(&at(&state)).unwrap();
        }
        assert_eq!(state.phase, Phase::Failed);
        let given_up = at(&state);
        // A late refusal, or a late forward reply, changes nothing.
        let refused = Outcome::Refused("locked".into());
        assert!(
            engine
                .on_reply(&given_up, &reply("c", Direction::Compensate, refused))
                .is_none()
        );
        assert!(
            engine
                .on_reply(&given_up, &reply("c", Direction::Forward, Outcome::Done))
                .is_none()
        );
        // The compensation's late success resumes it: a is undone, then
        // the saga ends rejected.
        state = engine
            .on_reply(&given_up, &reply("c", Direction::Compensate, Outcome::Done))
            .unwrap();
        assert_eq!(state.phase, Phase::Compensating);
        assert_eq!(
            events(&state),
            [("c", "compensated"), ("a", "compensation_sent")]
        );
        state = engine
            .on_reply(
                &at(&state),
                &reply("a", Direction::Compensate, Outcome::Done),
            )
            .unwrap();
        assert_eq!(state.phase, Phase::Compensated);
        assert_eq!(events(&state), [("a", "compensated"), ("c", "rejected")]);
    }

    #[test]
    fn a_failed_compensation_leaves_the_saga_for_an_operator() {
        let saga = saga();
        let engine = Engine::new(&saga);
        let first = engine.start(ID, &());
        let refused = Outcome::Refused("bad".into());
        let ended = engine
            .on_reply(&at(&first), &reply("a", Direction::Forward, refused))
            .unwrap();
        // a failed: nothing before it to undo.
        assert_eq!(ended.phase, Phase::Compensated);
        let done = engine
            .on_reply(&at(&first), &reply("a", Direction::Forward, Outcome::Done))
            .unwrap();
        let b_failed = engine
            .on_reply(
                &at(&done),
                &reply("b", Direction::Forward, Outcome::Refused("x".into())),
            )
            .unwrap();
        let stuck = engine
            .on_reply(
                &at(&b_failed),
                &reply(
                    "a",
                    Direction::Compensate,
                    Outcome::Refused("locked".into()),
                ),
            )
            .unwrap();
        assert_eq!(stuck.phase, Phase::Failed);
        assert_eq!(stuck.timeout, None);
        assert!(stuck.send.is_empty());
    }
}
