//! The one record of this run's exec sessions, shared by the modules that start and end them:
//! the sessions open now (with the SSM client that can end each), the ones already ended (Session
//! Manager may list those as active a little longer), what could not be cleaned up, and the
//! per-task session slots. [`super::slots`] takes slots and reads which sessions are ours;
//! [`super::sessions`] registers, ends and forgets sessions. Both use this module; neither uses
//! the other.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sessions the agent runs at once per container (ECS's `SessionWorkersLimit`).
pub const SESSIONS_PER_TASK: usize = 2;

/// A session this run has started and not yet ended.
#[derive(Clone)]
pub struct Open {
    pub id: String,
    pub ssm: aws_sdk_ssm::Client,
}

static OPEN: Mutex<Vec<Open>> = Mutex::new(Vec::new());
static ENDED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// This run's slots, per task ARN.
static SLOTS: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> = LazyLock::new(Default::default);

/// One of a task's session slots, held for as long as its session runs.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit) -> Slot {
        Slot { _permit: permit }
    }
}

/// The slots of the task `task_arn` (created with [`SESSIONS_PER_TASK`] free).
pub fn task_slots(task_arn: &str) -> Arc<Semaphore> {
    let mut map = SLOTS.lock().expect("slot table");
    Arc::clone(map.entry(task_arn.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(SESSIONS_PER_TASK))))
}

/// Record a session ExecuteCommand just granted.
pub fn register(open: Open) {
    OPEN.lock().expect("session registry").push(open);
}

/// The open session `id`, if it is still registered.
pub fn open_session(id: &str) -> Option<Open> {
    OPEN.lock().expect("session registry").iter().find(|o| o.id == id).cloned()
}

/// `id` has been ended: forget it as open, remember it as ended.
pub fn mark_ended(id: &str) {
    OPEN.lock().expect("session registry").retain(|o| o.id != id);
    ENDED.lock().expect("session registry").push(id.to_owned());
}

/// Every session still open, forgotten here (the caller ends them).
pub fn take_open() -> Vec<Open> {
    std::mem::take(&mut *OPEN.lock().expect("session registry"))
}

/// Whether `id` is a session this run started (open or ended), so it is not counted twice
/// against the task's session limit.
pub fn is_ours_or_ended(id: &str) -> bool {
    OPEN.lock().expect("session registry").iter().any(|o| o.id == id)
        || ENDED.lock().expect("session registry").iter().any(|e| e == id)
}

/// Something could not be cleaned up; `main` prints it on the way out.
pub fn note(text: String) {
    NOTES.lock().expect("session notes").push(text);
}

/// What could not be cleaned up, for the printer.
pub fn take_notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().expect("session notes"))
}
